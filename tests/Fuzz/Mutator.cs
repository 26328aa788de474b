using System.Buffers.Binary;
using System.Text;

namespace BigModel.Fuzz;

/// <summary>
/// Byte- and text-level mutations: bit flips, interesting bytes, truncation and extension, length-field edits,
/// number and string replacement in JSON text, deep nesting, splicing, and the target's own structural edits.
/// </summary>
public static class Mutator
{
    private static readonly string[] InterestingNumbers =
    [
        "-1", "0", "1", "7", "8", "255", "65536", "2147483647", "2147483648", "4294967295", "4294967296",
        "9223372036854775807", "9223372036854775808", "18446744073709551615", "1e308", "-0", "1.5", "1e-7", "99999999999999999999999",
    ];

    private static readonly string[] InterestingStrings =
    [
        "", "F32", "F16", "BF16", "F4", "BOOL", "I64", "U8", "__metadata__", "..", "../../etc/passwd", "/etc/passwd", "C:\\x",
        "\\u0000", "\\ud800", "\u00ff", "a/../../b", "model.safetensors", "pytorch_model.bin", "data_offsets", "shape", "dtype", "weight_map",
    ];

    public static byte[] Mutate(IFuzzTarget target, byte[] input, IReadOnlyList<byte[]> seeds, Random random)
    {
        int rounds = 1 + random.Next(3);
        var data = input;
        for (int i = 0; i < rounds; i++)
        {
            data = random.Next(12) switch
            {
                0 => FlipBits(data, random),
                1 => InterestingByte(data, random),
                2 => Truncate(data, random),
                3 => Extend(data, random),
                4 => LengthField(data, random),
                5 or 6 => ReplaceNumber(data, random),
                7 => ReplaceString(data, random),
                8 => Nest(data, random),
                9 => Splice(data, seeds[random.Next(seeds.Count)], random),
                _ => target.MutateStructure(data, random) ?? FlipBits(data, random),
            };
        }
        return data;
    }

    private static byte[] FlipBits(byte[] data, Random random)
    {
        if (data.Length == 0) return [(byte)random.Next(256)];
        var copy = (byte[])data.Clone();
        int flips = 1 + random.Next(8);
        for (int i = 0; i < flips; i++)
        {
            int at = random.Next(copy.Length);
            copy[at] ^= (byte)(1 << random.Next(8));
        }
        return copy;
    }

    private static byte[] InterestingByte(byte[] data, Random random)
    {
        if (data.Length == 0) return [0];
        var copy = (byte[])data.Clone();
        byte[] values = [0, 1, 0x7F, 0x80, 0xFF, (byte)'{', (byte)'}', (byte)'[', (byte)']', (byte)'"', (byte)',', (byte)':', (byte)'\\'];
        copy[random.Next(copy.Length)] = values[random.Next(values.Length)];
        return copy;
    }

    private static byte[] Truncate(byte[] data, Random random) => data.Length == 0 ? data : data[..random.Next(data.Length)];

    private static byte[] Extend(byte[] data, Random random)
    {
        var extra = new byte[1 + random.Next(64)];
        random.NextBytes(extra);
        int at = random.Next(data.Length + 1);
        return [.. data[..at], .. extra, .. data[at..]];
    }

    /// <summary>Rewrites a little-endian length-looking field (the safetensors prefix or any 4/8-byte slot).</summary>
    private static byte[] LengthField(byte[] data, Random random)
    {
        if (data.Length < 8) return Extend(data, random);
        var copy = (byte[])data.Clone();
        int at = random.Next(3) == 0 ? 0 : random.Next(copy.Length - 7);
        ulong current = BinaryPrimitives.ReadUInt64LittleEndian(copy.AsSpan(at));
        ulong[] choices = [0, 1, 7, current + 1, current - 1, current * 2, (ulong)data.Length, (ulong)data.Length - 8, uint.MaxValue, ulong.MaxValue, long.MaxValue, 100_000_001];
        var value = choices[random.Next(choices.Length)];
        if (random.Next(2) == 0) BinaryPrimitives.WriteUInt64LittleEndian(copy.AsSpan(at), value);
        else BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(at), (uint)value);
        return copy;
    }

    private static byte[] ReplaceNumber(byte[] data, Random random)
    {
        var (start, end) = FindRun(data, random, b => b is >= (byte)'0' and <= (byte)'9' || b == '-' || b == '.' || b == 'e');
        if (start < 0) return FlipBits(data, random);
        var replacement = Encoding.ASCII.GetBytes(InterestingNumbers[random.Next(InterestingNumbers.Length)]);
        return [.. data[..start], .. replacement, .. data[end..]];
    }

    private static byte[] ReplaceString(byte[] data, Random random)
    {
        // Find a quoted string and replace its contents.
        var quotes = new List<int>();
        for (int i = 0; i < data.Length && quotes.Count < 4096; i++) if (data[i] == '"') quotes.Add(i);
        if (quotes.Count < 2) return FlipBits(data, random);
        int q = random.Next(quotes.Count - 1);
        var text = InterestingStrings[random.Next(InterestingStrings.Length)];
        if (random.Next(8) == 0) text = new string('A', 1 + random.Next(100_000));
        var replacement = Encoding.UTF8.GetBytes(text);
        return [.. data[..(quotes[q] + 1)], .. replacement, .. data[quotes[q + 1]..]];
    }

    private static byte[] Nest(byte[] data, Random random)
    {
        int depth = random.Next(2) == 0 ? 1 + random.Next(100) : 10_000 + random.Next(100_000);
        var open = random.Next(2) == 0 ? (byte)'[' : (byte)'{';
        var nested = new byte[depth];
        Array.Fill(nested, open);
        int at = data.Length == 0 ? 0 : random.Next(data.Length);
        return [.. data[..at], .. nested, .. data[at..]];
    }

    private static byte[] Splice(byte[] a, byte[] b, Random random)
    {
        if (a.Length == 0 || b.Length == 0) return a;
        int cut = random.Next(a.Length);
        int from = random.Next(b.Length);
        return [.. a[..cut], .. b[from..Math.Min(b.Length, from + 1 + random.Next(256))], .. a[cut..]];
    }

    private static (int Start, int End) FindRun(byte[] data, Random random, Func<byte, bool> member)
    {
        if (data.Length == 0) return (-1, -1);
        int probe = random.Next(data.Length);
        for (int n = 0; n < data.Length; n++)
        {
            int i = (probe + n) % data.Length;
            if (!member(data[i])) continue;
            int start = i, end = i;
            while (start > 0 && member(data[start - 1])) start--;
            while (end < data.Length && member(data[end])) end++;
            return (start, end);
        }
        return (-1, -1);
    }
}
