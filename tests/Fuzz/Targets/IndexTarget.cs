using System.Text;
using System.Text.Json;
using BigModel.Checkpoints;

namespace BigModel.Fuzz.Targets;

/// <summary>
/// Sharded checkpoints: a mutated model.safetensors.index.json beside two fixed valid shards (plus a symbolic link
/// pointing out of the folder), opened with Checkpoint.Open as any user path would be.
/// </summary>
public sealed class IndexTarget : IFuzzTarget
{
    private string? _folder;

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

    private static string Prepare(Scratch scratch)
    {
        var folder = scratch.Folder("index");
        foreach (var group in ShardTensors().GroupBy(t => t.Shard))
        {
            var layout = SafetensorsLayout.Create(group.Select(t => new TensorSpec(t.Name, DType.F32, [4])));
            using var writer = new SafetensorsWriter(Path.Combine(folder, group.Key), layout);
            writer.Write(new byte[layout.DataLength]);
            writer.Complete();
        }
        var outside = scratch.Write("outside.safetensors", SafetensorsTarget.Generated());
        File.CreateSymbolicLink(Path.Combine(folder, "link.safetensors"), outside);
        return folder;
    }
}
