using System.Text;
using System.Text.Json;
using BigModel.Checkpoints;

namespace BigModel.Fuzz.Targets;

/// <summary>
/// Sharded checkpoints: a mutated model.safetensors.index.json beside fixed valid shards (plus a symbolic link
/// pointing out of the folder), opened with Checkpoint.Open as any user path would be. Besides two small generated
/// shards, the folder holds the tensors of MiniLM and stories260K (when present) shrunk to one element each and
/// spread over two shards, so their real indexes, with hundreds of real names, are seeds too.
/// </summary>
public sealed class IndexTarget : IFuzzTarget
{
    private string? _folder;
    private readonly List<(string Shard, TensorSpec Spec)> _realTensors = [];

    public string Name => "index";

    public IReadOnlyList<byte[]> Seeds(SeedSources sources)
    {
        var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, shard) in ShardTensors()) map[name] = shard;
        var seeds = new List<byte[]>
        {
            JsonSerializer.SerializeToUtf8Bytes(new { metadata = new { total_size = 64 }, weight_map = map }),
            Encoding.UTF8.GetBytes("{\"metadata\":{},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\"}}"),
        };
        _realTensors.Clear();
        foreach (var (model, folder) in new[] { ("minilm", sources.MiniLM), ("stories", sources.Stories260K) })
        {
            if (folder is null || !File.Exists(Path.Combine(folder, "model.safetensors"))) continue;
            var (specs, _) = SafetensorsTarget.ShrunkSpecs(Path.Combine(folder, "model.safetensors"));
            var realMap = new Dictionary<string, string>(StringComparer.Ordinal);
            long total = 0;
            for (int i = 0; i < specs.Count; i++)
            {
                // Forward halves, as a real split puts consecutive layers together.
                var shard = $"{model}-0000{(i < specs.Count / 2 ? 1 : 2)}-of-00002.safetensors";
                _realTensors.Add((shard, specs[i]));
                realMap[specs[i].Name] = shard;
                total += specs[i].ByteLength;
            }
            seeds.Add(JsonSerializer.SerializeToUtf8Bytes(new { metadata = new { total_size = total }, weight_map = realMap }, new JsonSerializerOptions { WriteIndented = true }));
        }
        _folder = null;
        return seeds;
    }

    public void Execute(byte[] input, Scratch scratch)
    {
        _folder ??= Prepare(scratch);
        File.WriteAllBytes(Path.Combine(_folder, "model.safetensors.index.json"), input);
        var checkpoint = Checkpoint.Open(_folder);
        _ = checkpoint.Tensors.Count;
    }

    private static IEnumerable<(string Name, string Shard)> ShardTensors()
    {
        yield return ("a", "model-00001-of-00002.safetensors");
        yield return ("b", "model-00001-of-00002.safetensors");
        yield return ("c", "model-00002-of-00002.safetensors");
        yield return ("d", "model-00002-of-00002.safetensors");
    }

    private string Prepare(Scratch scratch)
    {
        var folder = scratch.Folder("index");
        var shards = ShardTensors().Select(t => (t.Shard, Spec: new TensorSpec(t.Name, DType.F32, [4]))).Concat(_realTensors);
        foreach (var group in shards.GroupBy(t => t.Shard))
        {
            var path = Path.Combine(folder, group.Key);
            if (File.Exists(path)) continue;
            var layout = SafetensorsLayout.Create(group.Select(t => t.Spec), new Dictionary<string, string> { ["format"] = "pt" });
            using var writer = new SafetensorsWriter(path, layout);
            writer.Write(new byte[layout.DataLength]);
            writer.Complete();
        }
        var link = Path.Combine(folder, "link.safetensors");
        if (!File.Exists(link) && new FileInfo(link).LinkTarget is null)
            File.CreateSymbolicLink(link, scratch.Write("outside.safetensors", SafetensorsTarget.Generated()));
        return folder;
    }
}
