using System.Buffers.Binary;
using System.Text;
using BigModel.Checkpoints;

namespace BigModel.Fuzz.Targets;

/// <summary>Single safetensors files: header validation, then every tensor's first and last bytes read back.</summary>
public sealed class SafetensorsTarget : IFuzzTarget
{
    public string Name => "safetensors";

    public IReadOnlyList<byte[]> Seeds(SeedSources sources)
    {
        var seeds = new List<byte[]> { Generated() };
        if (sources.Stories260K is { } stories && File.Exists(Path.Combine(stories, "model.safetensors")))
            seeds.Add(File.ReadAllBytes(Path.Combine(stories, "model.safetensors")));
        if (sources.MiniLM is { } minilm && File.Exists(Path.Combine(minilm, "model.safetensors")))
            seeds.Add(Shrunk(Path.Combine(minilm, "model.safetensors")));
        return seeds;
    }

    public byte[]? MutateStructure(byte[] input, Random random)
    {
        // Rewrite the header length to point into the data or just short of the header's end.
        if (input.Length < 8) return null;
        var copy = (byte[])input.Clone();
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(copy);
        long delta = random.Next(-16, 17);
        BinaryPrimitives.WriteUInt64LittleEndian(copy, (ulong)Math.Max(0, (long)Math.Min(n, (ulong)input.Length) + delta));
        return copy;
    }

    public void Execute(byte[] input, Scratch scratch)
    {
        var path = scratch.Write("fuzz.safetensors", input);
        var header = SafetensorsHeader.Read(path);
        var buffer = new byte[64];
        using var handle = TensorData.Open(path);
        foreach (var t in header.Tensors)
        {
            if (t.ByteLength == 0) continue;
            // Reading back proves the validated offsets really lie inside the file.
            RandomAccess.Read(handle, buffer.AsSpan(0, (int)Math.Min(64, t.ByteLength)), t.DataOffset);
            RandomAccess.Read(handle, buffer.AsSpan(0, 1), t.DataOffset + t.ByteLength - 1);
        }
    }

    /// <summary>A file with every common dtype, metadata, a scalar and an empty tensor.</summary>
    public static byte[] Generated()
    {
        var specs = new[]
        {
            new TensorSpec("model.embed_tokens.weight", DType.BF16, [4, 3]),
            new TensorSpec("model.layers.0.mlp.up_proj.weight", DType.F32, [3, 2]),
            new TensorSpec("model.layers.0.scale", DType.F16, []),
            new TensorSpec("mask", DType.BOOL, [5]),
            new TensorSpec("ids", DType.I64, [2]),
            new TensorSpec("empty", DType.F32, [0, 7]),
            new TensorSpec("packed", DType.F4, [4]),
        };
        var layout = SafetensorsLayout.Create(specs, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "seed" });
        var bytes = new byte[layout.FileLength];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)layout.Header.Length);
        layout.Header.CopyTo(bytes, 8);
        for (long i = 8 + layout.Header.Length; i < bytes.Length; i++) bytes[i] = (byte)(i * 13);
        return bytes;
    }

    /// <summary>A real file's header (names, dtypes, metadata) with every tensor shrunk to one element.</summary>
    private static byte[] Shrunk(string path)
    {
        var (specs, metadata) = ShrunkSpecs(path);
        var layout = SafetensorsLayout.Create(specs, metadata);
        var bytes = new byte[layout.FileLength];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)layout.Header.Length);
        layout.Header.CopyTo(bytes, 8);
        return bytes;
    }

    /// <summary>The tensors of a real file, each shrunk to one element of the same rank, and its metadata.</summary>
    internal static (IReadOnlyList<TensorSpec> Specs, IReadOnlyDictionary<string, string>? Metadata) ShrunkSpecs(string path)
    {
        var header = SafetensorsHeader.Read(path);
        var specs = header.Tensors.Select(t => new TensorSpec(t.Name, t.DType, t.Shape.Count == 0 ? [] : Enumerable.Repeat(1L, t.Shape.Count).ToArray())).ToList();
        return (specs, header.Metadata);
    }
}
