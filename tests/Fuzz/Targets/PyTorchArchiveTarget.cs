using BigModel.Checkpoints;
using BigModel.Checkpoints.PyTorch;
using BigModel.Fuzz.Archives;

namespace BigModel.Fuzz.Targets;

/// <summary>
/// pytorch_model.bin as a whole file: mutations of torch-written archives reach the zip layer (end records, central
/// directory, local headers, sizes, names). Every tensor read back must stay inside the file.
/// </summary>
public sealed class PyTorchArchiveTarget : IFuzzTarget
{
    public string Name => "pytorch";

    public IReadOnlyList<byte[]> Seeds(SeedSources sources)
    {
        var seeds = sources.TorchArchives().ToList();
        seeds.Add(PicklePayloadTarget.Generated());
        seeds.AddRange(sources.RealStateDictArchives());
        return seeds;
    }

    private const int MaxGrownBytes = 4 << 20;

    public byte[]? MutateStructure(byte[] input, Random random)
    {
        if (input.Length < 64) return null;
        var bytes = (byte[])input.Clone();
        switch (random.Next(3))
        {
            case 0: // a field of the end records or central directory set to an extreme
            {
                int tail = Math.Min(bytes.Length, 600);
                int at = bytes.Length - tail + random.Next(tail - 8);
                byte extreme = random.Next(4) switch { 0 => 0xFF, 1 => 0x00, 2 => 0x7F, _ => (byte)random.Next(256) };
                for (int k = random.Next(1, 9); k > 0; k--) bytes[at + k] = extreme;
                return bytes;
            }
            case 1: // a local header field
            {
                // A signature near the end (mutated data can hold one anywhere) leaves no room for a whole header.
                var headers = Find(bytes, [0x50, 0x4b, 0x03, 0x04]).Where(h => h + 30 <= bytes.Length).ToList();
                if (headers.Count == 0) return null;
                bytes[headers[random.Next(headers.Count)] + 4 + random.Next(26)] = (byte)random.Next(256);
                return bytes;
            }
            default: // a slice duplicated or removed
            {
                int a = random.Next(bytes.Length), b = random.Next(bytes.Length);
                if (a > b) (a, b) = (b, a);
                // Duplication only while the input stays small, so repeated growth cannot swamp the run.
                return random.Next(2) == 0 && bytes.Length + (b - a) <= MaxGrownBytes ? [.. bytes[..b], .. bytes[a..]] : [.. bytes[..a], .. bytes[b..]];
            }
        }
    }

    public void Execute(byte[] input, Scratch scratch) => ReadBack(scratch.Write("fuzz.bin", input));

    internal static readonly PyTorchLimits Limits = new() { MaxPickleBytes = 4 << 20, MaxStringBytes = 1 << 20, MaxOperations = 2_000_000 };

    internal static void ReadBack(string path)
    {
        var buffer = new byte[4096];
        foreach (var t in PyTorchCheckpointReader.ReadTensors(path, Limits))
            if (t.ByteLength <= 1 << 16) TensorData.Read(t, _ => { }, buffer);
    }

    private static List<int> Find(byte[] haystack, byte[] needle)
    {
        var found = new List<int>();
        for (int i = haystack.AsSpan().IndexOf(needle); i >= 0 && found.Count < 256;)
        {
            found.Add(i);
            int next = haystack.AsSpan(i + 1).IndexOf(needle);
            i = next < 0 ? -1 : i + 1 + next;
        }
        return found;
    }
}
