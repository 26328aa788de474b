using System.Diagnostics;
using System.IO.Compression;
using BigModel.Checkpoints;
using BigModel.Checkpoints.PyTorch;
using BigModel.Errors;
using BigModel.Tests.Support;

namespace BigModel.Tests.Checkpoints.PyTorch;

/// <summary>
/// Bounded mutation fuzzing of PyTorch archives seeded from the torch-written fixtures: whole-file mutations (which
/// exercise the zip layer) and pickle mutations repacked into valid archives (which reach the pickle machine past
/// the CRC check). Every input must end in a result or a <see cref="BigModelException"/>, quickly. The iteration
/// count can be raised with BIGMODEL_FUZZ_ITERATIONS for long runs; the seed is fixed so failures reproduce.
/// </summary>
public sealed class PyTorchMutationFuzzTests : IDisposable
{
    private static readonly string[] Seeds = ["hf_default.bin", "hf_protocol4.bin", "hf_protocol5.bin", "nested.pt"];

    /// <summary>Bytes that are opcodes worth splicing in: containers, memo, calls, lengths.</summary>
    private static readonly byte[] Opcodes = "(.0129FIJKLMNPQRSTUVXabcdeghijlopqrstu}])GBC"u8.ToArray()
        .Concat(Enumerable.Range(0x80, 0x19).Select(i => (byte)i)).ToArray();

    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static int Iterations(int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable("BIGMODEL_FUZZ_ITERATIONS"), out var n) && n > 0 ? n : fallback;

    private static readonly PyTorchLimits Tight = new() { MaxPickleBytes = 4 << 20, MaxStringBytes = 1 << 20, MaxOperations = 2_000_000 };

    [Fact]
    public void Mutated_archives_end_in_a_result_or_a_typed_error()
    {
        var random = new Random(20240601);
        var seeds = Seeds.Select(s => File.ReadAllBytes(PyTorchFixtureTests.Fixture("valid", s))).ToArray();
        int iterations = Iterations(1000);
        int typed = 0;
        for (int i = 0; i < iterations; i++)
        {
            var bytes = MutateFile(seeds[random.Next(seeds.Length)], random);
            typed += Run(bytes, $"archive-{i}") ? 1 : 0;
        }
        Assert.True(typed > iterations / 4, $"only {typed} of {iterations} mutations were refused: the mutations are too weak");
    }

    [Fact]
    public void Mutated_pickles_inside_valid_archives_end_in_a_result_or_a_typed_error()
    {
        var random = new Random(7);
        var seeds = Seeds.Select(s => Unpack(PyTorchFixtureTests.Fixture("valid", s))).ToArray();
        int iterations = Iterations(2000);
        int typed = 0;
        for (int i = 0; i < iterations; i++)
        {
            var (prefix, pickle, storages) = seeds[random.Next(seeds.Length)];
            var mutated = MutatePickle(pickle, random);
            var archive = TorchArchive.Builder(mutated, storages, prefix).ToArray();
            typed += Run(archive, $"pickle-{i}") ? 1 : 0;
        }
        Assert.True(typed > iterations / 4, $"only {typed} of {iterations} mutations were refused: the mutations are too weak");
    }

    /// <summary>True when the input was refused with a typed error; fails the test on anything else.</summary>
    private bool Run(byte[] bytes, string name)
    {
        var path = _dir.Combine("fuzz.bin");
        File.WriteAllBytes(path, bytes);
        var watch = Stopwatch.StartNew();
        try
        {
            var tensors = PyTorchCheckpointReader.ReadTensors(path, Tight);
            var buffer = new byte[4096];
            foreach (var t in tensors.Where(t => t.ByteLength <= 1 << 16)) TensorData.Read(t, _ => { }, buffer);
            return false;
        }
        catch (BigModelException)
        {
            return true;
        }
        catch (Exception e)
        {
            var keep = Path.Combine(Path.GetTempPath(), $"bigmodel-fuzz-{name}.bin");
            File.WriteAllBytes(keep, bytes);
            Assert.Fail($"{name}: {e.GetType().Name} escaped ({e.Message}); input kept at {keep}\n{e.StackTrace}");
            return false;
        }
        finally
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"{name} took {watch.Elapsed}");
        }
    }

    private static (string Prefix, byte[] Pickle, List<(string, byte[])> Storages) Unpack(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        var pkl = zip.Entries.Single(e => e.FullName.EndsWith("/data.pkl"));
        var prefix = pkl.FullName[..^"/data.pkl".Length];
        var storages = zip.Entries.Where(e => e.FullName.StartsWith(prefix + "/data/"))
            .Select(e => (e.FullName[(prefix.Length + 6)..], ReadAll(e))).ToList();
        return (prefix, ReadAll(pkl), storages);
    }

    private static byte[] ReadAll(ZipArchiveEntry entry)
    {
        using var s = entry.Open();
        var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    private static byte[] MutateFile(byte[] seed, Random random)
    {
        var bytes = seed.ToArray();
        switch (random.Next(6))
        {
            case 0: // bit flips anywhere
                for (int k = random.Next(1, 8); k > 0; k--) bytes[random.Next(bytes.Length)] ^= (byte)(1 << random.Next(8));
                return bytes;
            case 1: // truncation
                return bytes[..random.Next(bytes.Length)];
            case 2: // a length or offset field in the central directory / end records set to an extreme
            {
                int tail = Math.Min(bytes.Length, 600);
                int at = bytes.Length - tail + random.Next(tail - 8);
                var extreme = random.Next(4) switch { 0 => 0xFF, 1 => 0x00, 2 => 0x7F, _ => (byte)random.Next(256) };
                for (int k = 0; k < random.Next(1, 9); k++) bytes[at + k] = (byte)extreme;
                return bytes;
            }
            case 3: // local header fields
            {
                var local = FindAll(bytes, [0x50, 0x4b, 0x03, 0x04]);
                int at = local[random.Next(local.Count)] + 4 + random.Next(26);
                bytes[at] = (byte)random.Next(256);
                return bytes;
            }
            case 4: // a slice duplicated or removed
            {
                int a = random.Next(bytes.Length), b = random.Next(bytes.Length);
                if (a > b) (a, b) = (b, a);
                return random.Next(2) == 0 ? [.. bytes[..b], .. bytes[a..]] : [.. bytes[..a], .. bytes[b..]];
            }
            default: // random bytes overwritten
                for (int k = random.Next(1, 32); k > 0; k--) bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
                return bytes;
        }
    }

    private static byte[] MutatePickle(byte[] seed, Random random)
    {
        var bytes = seed.ToList();
        for (int round = random.Next(1, 4); round > 0 && bytes.Count > 2; round--)
        {
            int at = random.Next(bytes.Count);
            switch (random.Next(7))
            {
                case 0: bytes[at] ^= (byte)(1 << random.Next(8)); break;
                case 1: bytes[at] = Opcodes[random.Next(Opcodes.Length)]; break;
                case 2: bytes.Insert(at, Opcodes[random.Next(Opcodes.Length)]); break;
                case 3: bytes.RemoveRange(at, Math.Min(bytes.Count - at, random.Next(1, 16))); break;
                case 4: // a length or integer operand set to an extreme
                    for (int k = 0; k < 4 && at + k < bytes.Count; k++) bytes[at + k] = random.Next(2) == 0 ? (byte)0xFF : (byte)0x7F;
                    break;
                case 5: // a slice repeated (deep nesting, memo reuse)
                {
                    int length = Math.Min(bytes.Count - at, random.Next(1, 40));
                    var slice = bytes.GetRange(at, length);
                    for (int k = random.Next(1, 50); k > 0; k--) bytes.InsertRange(at, slice);
                    break;
                }
                default: bytes.RemoveRange(at, bytes.Count - at); break;
            }
        }
        return [.. bytes];
    }

    private static List<int> FindAll(byte[] haystack, byte[] needle)
    {
        var found = new List<int>();
        for (int i = haystack.AsSpan().IndexOf(needle); i >= 0;)
        {
            found.Add(i);
            int next = haystack.AsSpan(i + 1).IndexOf(needle);
            i = next < 0 ? -1 : i + 1 + next;
        }
        return found;
    }
}
