using System.IO.Compression;
using BigModel.Fuzz.Archives;

namespace BigModel.Fuzz.Targets;

/// <summary>
/// The pickle inside pytorch_model.bin: mutated data.pkl streams repacked into valid archives (so they get past the
/// zip layer and its CRC check) exercise the restricted pickle machine: opcodes, memo, marks, lengths, nesting.
/// An input is one byte naming the seed archive whose storages and layout to pack with, then the pickle itself.
/// </summary>
public sealed class PicklePayloadTarget : IFuzzTarget
{
    /// <summary>Opcodes worth splicing in: containers, memo, calls, lengths, protocol 2+ opcodes.</summary>
    private static readonly byte[] Opcodes = "(.0129FIJKLMNPQRSTUVXabcdeghijlopqrstu}])GBC"u8.ToArray()
        .Concat(Enumerable.Range(0x80, 0x19).Select(i => (byte)i)).ToArray();

    private List<(string Prefix, List<(string Key, byte[] Data)> Storages)> _layouts = [];

    public string Name => "pickle";

    public IReadOnlyList<byte[]> Seeds(SeedSources sources)
    {
        var seeds = new List<byte[]>();
        _layouts = [];
        foreach (var archive in sources.TorchArchives().Append(Generated()).Concat(sources.RealStateDictArchives()))
        {
            var (prefix, pickle, storages) = Unpack(archive);
            seeds.Add([(byte)_layouts.Count, .. pickle]);
            _layouts.Add((prefix, storages));
        }
        return seeds;
    }

    public byte[]? MutateStructure(byte[] input, Random random)
    {
        var bytes = input.ToList();
        if (bytes.Count < 3) return null;
        int at = 1 + random.Next(bytes.Count - 1);
        switch (random.Next(4))
        {
            case 0: bytes[at] = Opcodes[random.Next(Opcodes.Length)]; break;
            case 1: bytes.Insert(at, Opcodes[random.Next(Opcodes.Length)]); break;
            case 2: // a slice repeated (deep nesting, memo reuse)
            {
                var slice = bytes.GetRange(at, Math.Min(bytes.Count - at, random.Next(1, 40)));
                for (int k = random.Next(1, 50); k > 0; k--) bytes.InsertRange(at, slice);
                break;
            }
            default: bytes.RemoveRange(at, Math.Min(bytes.Count - at, random.Next(1, 16))); break;
        }
        return [.. bytes];
    }

    public void Execute(byte[] input, Scratch scratch)
    {
        if (input.Length == 0) return;
        var (prefix, storages) = _layouts[input[0] % _layouts.Count];
        var path = Path.Combine(scratch.Root, "fuzz-pickle.bin");
        TorchArchive.Builder(input[1..], storages, prefix).WriteFile(path);
        PyTorchArchiveTarget.ReadBack(path);
    }

    /// <summary>A small archive written by hand: an OrderedDict with one F32 tensor rebuilt from storage "0".</summary>
    internal static byte[] Generated()
    {
        // protocol 2: OrderedDict([('w', _rebuild_tensor_v2(storage('0', FloatStorage, 4 elements), 0, (2, 2), (2, 1), False, OrderedDict()))])
        var pickle = new List<byte> { 0x80, 0x02 };
        void Global(string module, string name) { pickle.Add((byte)'c'); pickle.AddRange(System.Text.Encoding.ASCII.GetBytes(module + "\n" + name + "\n")); }
        void Unicode(string s) { pickle.Add((byte)'X'); pickle.AddRange(BitConverter.GetBytes(s.Length)); pickle.AddRange(System.Text.Encoding.ASCII.GetBytes(s)); }
        Global("collections", "OrderedDict");
        pickle.AddRange(")R"u8.ToArray());
        pickle.Add((byte)'(');
        Unicode("w");
        Global("torch._utils", "_rebuild_tensor_v2");
        pickle.Add((byte)'(');
        pickle.Add((byte)'(');
        Unicode("storage");
        Global("torch", "FloatStorage");
        Unicode("0");
        Unicode("cpu");
        pickle.AddRange(new byte[] { (byte)'K', 4, (byte)'t', (byte)'Q' });
        pickle.AddRange(new byte[] { (byte)'K', 0, (byte)'K', 2, (byte)'K', 2, 0x86, (byte)'K', 2, (byte)'K', 1, 0x86, 0x89 });
        Global("collections", "OrderedDict");
        pickle.AddRange(")R"u8.ToArray());
        pickle.AddRange("tRu."u8.ToArray());
        var storage = new byte[16];
        for (int i = 0; i < 4; i++) BitConverter.TryWriteBytes(storage.AsSpan(i * 4), (float)i);
        return TorchArchive.Builder([.. pickle], [("0", storage)]).ToArray();
    }

    private static (string Prefix, byte[] Pickle, List<(string Key, byte[] Data)> Storages) Unpack(byte[] archive)
    {
        using var zip = new ZipArchive(new MemoryStream(archive), ZipArchiveMode.Read);
        var pkl = zip.Entries.Single(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal));
        var prefix = pkl.FullName[..^"/data.pkl".Length];
        var storages = zip.Entries.Where(e => e.FullName.StartsWith(prefix + "/data/", StringComparison.Ordinal))
            .Select(e => (e.FullName[(prefix.Length + 6)..], ReadAll(e))).ToList();
        return (prefix, ReadAll(pkl), storages);
    }

    private static byte[] ReadAll(ZipArchiveEntry entry)
    {
        using var stream = entry.Open();
        var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        return buffer.ToArray();
    }
}
