using System.Text.Json.Nodes;
using BigModel.Checkpoints;
using BigModel.Fixtures.IO;

namespace BigModel.Fixtures.Synthetic;

/// <summary>How one tensor's values are drawn: <c>mean + std × N(0, 1)</c>, keyed by seed and tensor name.</summary>
public sealed record ValueRule(float Mean, float Std);

/// <summary>
/// Streams synthetic tensors into safetensors shards in fixed-size chunks, so memory use does not depend on the
/// model's size, and writes the Hugging Face index when there is more than one shard.
/// </summary>
public static class SyntheticCheckpointWriter
{
    /// <summary>Elements generated per chunk: 1 Mi floats, 4 MiB.</summary>
    public const int ChunkElements = 1 << 20;

    public static readonly IReadOnlyDictionary<string, string> Metadata = new Dictionary<string, string> { ["format"] = "pt" };

    /// <summary>Writes the shards of <paramref name="plan"/> into <paramref name="folder"/>; returns the bytes written.</summary>
    public static long Write(string folder, ShardPlan plan, ulong seed, Func<TensorSpec, ValueRule> rule)
    {
        var values = new float[ChunkElements];
        var bytes = new byte[ChunkElements * 4];
        long written = 0;
        foreach (var (file, tensors) in plan.Shards)
        {
            var layout = SafetensorsLayout.Create(tensors, Metadata);
            using (var writer = new SafetensorsWriter(Path.Combine(folder, file), layout))
            {
                foreach (var (spec, _) in layout.Tensors)
                {
                    var r = rule(spec);
                    ulong key = TensorValues.Key(seed, spec.Name);
                    int elementBytes = spec.DType.Bits() / 8;
                    long total = spec.ElementCount;
                    for (long start = 0; start < total; start += ChunkElements)
                    {
                        int n = (int)Math.Min(ChunkElements, total - start);
                        FillParallel(key, start, values.AsSpan(0, n), r);
                        TensorValues.Encode(values.AsSpan(0, n), spec.DType, bytes);
                        writer.Write(bytes.AsSpan(0, n * elementBytes));
                    }
                }
                writer.Complete();
            }
            written += layout.FileLength;
        }
        if (plan.IsSharded) written += WriteIndex(Path.Combine(folder, "model.safetensors.index.json"), plan);
        return written;
    }

    /// <summary>The values do not depend on how the chunk is split, so the cores share it.</summary>
    private static void FillParallel(ulong key, long start, Span<float> destination, ValueRule rule)
    {
        int parts = Math.Min(Environment.ProcessorCount, Math.Max(1, destination.Length / 65536));
        if (parts == 1)
        {
            TensorValues.Fill(key, start, destination, rule.Mean, rule.Std);
            return;
        }
        unsafe
        {
            fixed (float* p = destination)
            {
                var pointer = (nint)p;
                int length = destination.Length;
                Parallel.For(0, parts, part =>
                {
                    int from = (int)((long)length * part / parts);
                    int to = (int)((long)length * (part + 1) / parts);
                    var slice = new Span<float>((float*)pointer + from, to - from);
                    TensorValues.Fill(key, start + from, slice, rule.Mean, rule.Std);
                });
            }
        }
    }

    /// <summary>model.safetensors.index.json as transformers writes it: total tensor bytes and a sorted weight_map.</summary>
    public static long WriteIndex(string path, ShardPlan plan)
    {
        var map = new JsonObject();
        foreach (var (name, file) in plan.Shards.SelectMany(s => s.Tensors.Select(t => (t.Name, s.File))).OrderBy(p => p.Name, StringComparer.Ordinal))
            map[name] = file;
        var index = new JsonObject
        {
            ["metadata"] = new JsonObject { ["total_size"] = plan.TotalSize },
            ["weight_map"] = map,
        };
        return JsonFiles.Write(path, index);
    }
}
