using System.Text.Json;
using BigModel.Checkpoints;

namespace BigModel.Tests.Support;

/// <summary>Writes small, real checkpoints for tests: safetensors files, sharded folders with an index, configs.</summary>
public static class CheckpointBuilder
{
    /// <summary>Writes one safetensors file; each tensor's bytes are a deterministic pattern unless given.</summary>
    public static string Safetensors(string path, IEnumerable<(string Name, DType DType, long[] Shape)> tensors, IReadOnlyDictionary<string, byte[]>? data = null,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var specs = tensors.Select(t => new TensorSpec(t.Name, t.DType, t.Shape)).ToList();
        var layout = SafetensorsLayout.Create(specs, metadata ?? new Dictionary<string, string> { ["format"] = "pt" });
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using var writer = new SafetensorsWriter(path, layout);
        foreach (var (spec, _) in layout.Tensors)
            writer.Write(data is not null && data.TryGetValue(spec.Name, out var bytes) ? bytes : Pattern(spec.Name, spec.ByteLength));
        writer.Complete();
        return path;
    }

    /// <summary>Writes shards plus model.safetensors.index.json; <paramref name="shards"/> lists each shard's tensors.</summary>
    public static string Sharded(string folder, IReadOnlyList<IReadOnlyList<(string Name, DType DType, long[] Shape)>> shards)
    {
        Directory.CreateDirectory(folder);
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        long total = 0;
        for (int i = 0; i < shards.Count; i++)
        {
            var name = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            Safetensors(Path.Combine(folder, name), shards[i]);
            foreach (var t in shards[i])
            {
                weightMap[t.Name] = name;
                total += new TensorSpec(t.Name, t.DType, t.Shape).ByteLength;
            }
        }
        Index(folder, weightMap, total);
        return folder;
    }

    public static string Index(string folder, IReadOnlyDictionary<string, string> weightMap, long? totalSize, string name = "model.safetensors.index.json")
    {
        var json = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["metadata"] = totalSize is null ? new Dictionary<string, object>() : new Dictionary<string, object> { ["total_size"] = totalSize },
            ["weight_map"] = weightMap,
        }, new JsonSerializerOptions { WriteIndented = true });
        var path = Path.Combine(folder, name);
        File.WriteAllText(path, json);
        return path;
    }

    public static string Config(string folder, string json)
    {
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, "config.json");
        File.WriteAllText(path, json);
        return path;
    }

    /// <summary>Bytes that differ per tensor and per position, so misplaced data is caught.</summary>
    public static byte[] Pattern(string name, long length)
    {
        var bytes = new byte[length];
        uint h = 2166136261;
        foreach (var c in name) h = (h ^ c) * 16777619;
        for (long i = 0; i < length; i++) bytes[i] = (byte)((h >> (int)(i % 4 * 8)) + i * 31);
        return bytes;
    }
}
