using BigModel.Checkpoints;
using BigModel.IO;
using BigModel.Sharding;

namespace BigModel.Harness;

/// <summary>Writes checkpoints of random tensors, streamed, in any size.</summary>
internal static class GenerateCommand
{
    public static int Run(Arguments args)
    {
        var folder = args.Required("out");
        var size = args.Size("size", 64L << 20);
        var tensorSize = args.Size("tensor-size", 64L << 20);
        var dtype = args.Option("dtype") is { } d ? DTypes.Parse(d) : DType.F32;
        var seed = args.Int("seed", 1);
        var shards = args.Int("shards", 1);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var written = Write(folder, size, tensorSize, dtype, seed, shards);
        Console.WriteLine($"wrote {written} bytes of tensors to {folder} in {clock.Elapsed.TotalSeconds:F2} s");
        return 0;
    }

    /// <summary>
    /// Llama-style names (layers of four tensors, then a norm), random contents, <paramref name="size"/> bytes of tensor
    /// data in tensors of about <paramref name="tensorSize"/>; one file, or <paramref name="shards"/> shards and an index.
    /// </summary>
    public static long Write(string folder, long size, long tensorSize, DType dtype, int seed, int shards = 1)
    {
        Directory.CreateDirectory(folder);
        int elementBytes = dtype.Bits() / 8;
        long elements = Math.Max(1, tensorSize / elementBytes);
        long columns = 1024;
        long rows = Math.Max(1, elements / columns);
        long perTensor = rows * columns * elementBytes;
        int count = (int)Math.Max(1, size / perTensor);
        var specs = new List<TensorSpec>(count + 2) { new("model.embed_tokens.weight", dtype, [rows, columns]) };
        for (int i = 1; i < count; i++)
            specs.Add(new TensorSpec($"model.layers.{(i - 1) / 4}.mlp.w{(i - 1) % 4}.weight", dtype, [rows, columns]));
        specs.Add(new TensorSpec("model.norm.weight", dtype, [columns]));

        var random = new Random(seed);
        var buffer = new byte[Math.Min(perTensor, 8 << 20)];
        var map = new List<KeyValuePair<string, string>>();
        long total = 0;
        var groups = specs.Select((s, i) => (s, i)).GroupBy(p => p.i * shards / specs.Count, p => p.s).ToList();
        foreach (var group in groups)
        {
            var file = shards == 1 ? "model.safetensors" : ShardPlanner.ShardFileName(ShardPlanner.DefaultFilePattern, group.Key, groups.Count);
            var layout = SafetensorsLayout.Create(group, new Dictionary<string, string> { ["format"] = "pt" });
            using var writer = new SafetensorsWriter(Path.Combine(folder, file), layout, bufferBytes: 1);
            foreach (var (spec, _) in layout.Tensors)
            {
                for (long left = spec.ByteLength; left > 0;)
                {
                    int n = (int)Math.Min(buffer.Length, left);
                    random.NextBytes(buffer.AsSpan(0, n));
                    writer.Write(buffer.AsSpan(0, n));
                    left -= n;
                }
                map.Add(new(spec.Name, file));
                total += spec.ByteLength;
            }
            writer.Complete();
        }
        if (shards > 1)
            File.WriteAllText(Path.Combine(folder, ShardIndexJson.FileName), ShardIndexJson.Serialize(total, map));
        File.WriteAllText(Path.Combine(folder, "config.json"),
            $"{{\n  \"model_type\": \"generated\",\n  \"torch_dtype\": \"{dtype.TorchName()}\"\n}}\n");
        return total;
    }
}
