using System.Buffers.Binary;
using BigModel.Checkpoints;
using BigModel.Sharding;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace BigModel.Tests.Sharding;

/// <summary>
/// The converter against the libtorch BigModel runs on (2.x, through TorchSharp): bit for bit on every 16-bit pattern
/// and on a million random patterns plus the special values of each wider type.
/// </summary>
public sealed class DTypeConverterLibTorchTests(ITestOutputHelper output)
{
    private static readonly (DType From, DType To)[] Pairs =
    [
        (DType.F32, DType.BF16), (DType.F32, DType.F16), (DType.F16, DType.F32), (DType.F16, DType.BF16),
        (DType.BF16, DType.F32), (DType.BF16, DType.F16), (DType.F64, DType.F32), (DType.F64, DType.F16), (DType.F64, DType.BF16),
    ];

    [Fact]
    public void Agrees_with_libtorch_bit_for_bit()
    {
        var random = new Random(20260101);
        foreach (var (from, to) in Pairs)
        {
            int inSize = from.Bits() / 8, outSize = to.Bits() / 8;
            var input = Inputs(from, random);
            int count = input.Length / inSize;
            var ours = new byte[count * outSize];
            DTypeConverter.Convert(from, to, input, ours);
            byte[] theirs;
            using (NewDisposeScope())
            {
                var tensor = empty(count, Scalar(from));
                tensor.bytes = input;
                theirs = tensor.to(Scalar(to)).bytes.ToArray();
            }
            for (int i = 0; i < count; i++)
            {
                var a = ours.AsSpan(i * outSize, outSize);
                var b = theirs.AsSpan(i * outSize, outSize);
                Assert.True(a.SequenceEqual(b), $"{from}->{to} input 0x{Convert.ToHexString(input, i * inSize, inSize)}: ours 0x{Convert.ToHexString(a)}, libtorch 0x{Convert.ToHexString(b)}");
            }
            output.WriteLine($"{from} -> {to}: {count} patterns, identical");
        }
    }

    /// <summary>Every 16-bit pattern, or 2^20 random patterns plus the special values of the wider types.</summary>
    private static byte[] Inputs(DType dtype, Random random)
    {
        if (dtype is DType.F16 or DType.BF16)
        {
            var all = new byte[65536 * 2];
            for (int i = 0; i < 65536; i++) BinaryPrimitives.WriteUInt16LittleEndian(all.AsSpan(i * 2), (ushort)i);
            return all;
        }
        int size = dtype.Bits() / 8;
        var bytes = new byte[(1 << 20) * size];
        random.NextBytes(bytes);
        ulong[] specials = dtype == DType.F32
            ? [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0x00000001, 0x477FF000, 0x33000000, 0x3F808000]
            : [0, 0x8000000000000000, 0x7FF0000000000000, 0x7FF8000000000000, 0x7FF0000000000001, 0x0000000000000001];
        for (int i = 0; i < specials.Length; i++)
        {
            if (size == 4) BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i * 4), (uint)specials[i]);
            else BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), specials[i]);
        }
        return bytes;
    }

    private static ScalarType Scalar(DType dtype) => dtype switch
    {
        DType.F64 => ScalarType.Float64,
        DType.F32 => ScalarType.Float32,
        DType.F16 => ScalarType.Float16,
        DType.BF16 => ScalarType.BFloat16,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };
}
