using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using BigModel.Checkpoints;
using BigModel.Errors;

namespace BigModel.Sharding;

/// <summary>
/// Converts little-endian float tensor bytes between F64, F32, F16 and BF16 chunk by chunk, bit for bit as torch's
/// <c>Tensor.to(dtype)</c> does on the CPU:
/// <list type="bullet">
/// <item>F32 → BF16: round to nearest even on the top 16 bits; every NaN becomes 0xFFFF (torch's vectorised kernel).</item>
/// <item>F64 → BF16: through float32 (two roundings), then as F32 → BF16, NaN included.</item>
/// <item>F16 → BF16: through float32, rounded the same way, but every NaN becomes 0x7FC0 (torch's scalar
/// <c>round_to_nearest_even</c>, which this pair uses).</item>
/// <item>→ F16: round to nearest even with subnormals; NaN keeps its sign and becomes 0x7E00 (fp16_ieee_from_fp32_value,
/// as torch 1.13 does; torch 2.x's F16C kernel keeps the top payload bits instead, the one difference between them).</item>
/// <item>F64 → F16 goes through float32 first (two roundings), as c10's Half takes a float.</item>
/// <item>F16/BF16 → F32 are exact; an F16 NaN keeps its payload and is made quiet, a BF16 NaN is kept as is.</item>
/// </list>
/// .NET's own <see cref="Half"/> conversions round the same way but keep NaN payloads, so they are not used.
/// </summary>
public static class DTypeConverter
{
    /// <summary>Float32 bits of the quiet NaN torch's scalar bfloat16 conversion produces.</summary>
    private const ushort ScalarBFloat16NaN = 0x7FC0;

    /// <summary>What torch's AVX2/AVX-512 float32 → bfloat16 kernel writes for any NaN.</summary>
    private const ushort VectorBFloat16NaN = 0xFFFF;

    // Elements converted per pass through a float32 intermediate; small enough for the stack.
    private const int StagingElements = 2048;

    /// <summary>True for the element types conversion applies to.</summary>
    public static bool IsConvertible(DType dtype) => dtype is DType.F64 or DType.F32 or DType.F16 or DType.BF16;

    /// <summary>True for the element types a checkpoint can be converted to.</summary>
    public static bool IsTarget(DType dtype) => dtype is DType.F32 or DType.F16 or DType.BF16;

    /// <summary>
    /// The dtype a tensor of <paramref name="dtype"/> gets when a checkpoint is converted to <paramref name="target"/>:
    /// float tensors take the target; integer, bool, complex and 8-bit-or-smaller float tensors stay as they are.
    /// </summary>
    public static DType ConvertedType(DType dtype, DType? target) =>
        target is DType t && IsConvertible(dtype) ? t : dtype;

    /// <summary>True when <see cref="Convert"/> supports the pair (any type to itself counts).</summary>
    public static bool CanConvert(DType from, DType to) => from == to || (IsConvertible(from) && IsTarget(to));

    /// <summary>
    /// Converts whole elements of <paramref name="from"/> in <paramref name="source"/> to <paramref name="to"/> in
    /// <paramref name="destination"/>, which must be exactly the converted size. Returns the bytes written.
    /// </summary>
    public static int Convert(DType from, DType to, ReadOnlySpan<byte> source, Span<byte> destination)
    {
        if (!CanConvert(from, to))
            throw new BigModelException(BigModelErrorCode.InvalidDType, $"cannot convert {from} to {to}; only F64, F32, F16 and BF16 convert, to F32, F16 or BF16.");
        if (!BitConverter.IsLittleEndian)
            throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "dtype conversion needs a little-endian machine.");
        int inSize = from.Bits() / 8, outSize = to.Bits() / 8;
        if (source.Length % inSize != 0)
            throw new ArgumentException($"{source.Length} bytes are not whole {from} elements.", nameof(source));
        int count = source.Length / inSize;
        int needed = checked(count * outSize);
        if (destination.Length < needed)
            throw new ArgumentException($"the destination holds {destination.Length} bytes; {needed} are needed.", nameof(destination));
        var dst = destination[..needed];
        if (from == to)
        {
            source.CopyTo(dst);
            return needed;
        }
        switch (from, to)
        {
            case (DType.F32, DType.BF16):
                FloatToBFloat16(Cast<uint>(source), Cast<ushort>(dst), VectorBFloat16NaN);
                break;
            case (DType.F32, DType.F16):
                FloatToHalf(Cast<uint>(source), Cast<ushort>(dst));
                break;
            case (DType.F16, DType.F32):
                HalfToFloat(Cast<ushort>(source), Cast<uint>(dst));
                break;
            case (DType.BF16, DType.F32):
                BFloat16ToFloat(Cast<ushort>(source), Cast<uint>(dst));
                break;
            case (DType.F64, DType.F32):
                DoubleToFloat(Cast<double>(source), Cast<float>(dst));
                break;
            case (DType.F64, DType.BF16):
                ThroughFloat(from, to, source, dst, inSize, outSize, VectorBFloat16NaN);
                break;
            default:
                ThroughFloat(from, to, source, dst, inSize, outSize, ScalarBFloat16NaN);
                break;
        }
        return needed;
    }

    /// <summary>Pairs without a direct kernel: widen or narrow to float32 in stack-sized steps, then on to the target.</summary>
    private static void ThroughFloat(DType from, DType to, ReadOnlySpan<byte> source, Span<byte> destination, int inSize, int outSize, ushort bfloat16NaN)
    {
        Span<uint> staging = stackalloc uint[StagingElements];
        int count = source.Length / inSize;
        for (int start = 0; start < count; start += StagingElements)
        {
            int n = Math.Min(StagingElements, count - start);
            var input = source.Slice(start * inSize, n * inSize);
            var floats = staging[..n];
            switch (from)
            {
                case DType.F16: HalfToFloat(Cast<ushort>(input), floats); break;
                case DType.BF16: BFloat16ToFloat(Cast<ushort>(input), floats); break;
                case DType.F64: DoubleToFloat(Cast<double>(input), MemoryMarshal.Cast<uint, float>(floats)); break;
                default: throw new UnreachableException();
            }
            var output = destination.Slice(start * outSize, n * outSize);
            switch (to)
            {
                case DType.F32: MemoryMarshal.AsBytes(floats).CopyTo(output); break;
                case DType.F16: FloatToHalf(floats, Cast<ushort>(output)); break;
                case DType.BF16: FloatToBFloat16(floats, Cast<ushort>(output), bfloat16NaN); break;
                default: throw new UnreachableException();
            }
        }
    }

    private static ReadOnlySpan<T> Cast<T>(ReadOnlySpan<byte> bytes) where T : struct => MemoryMarshal.Cast<byte, T>(bytes);

    private static Span<T> Cast<T>(Span<byte> bytes) where T : struct => MemoryMarshal.Cast<byte, T>(bytes);

    // ---- float32 → bfloat16 ----

    internal static void FloatToBFloat16(ReadOnlySpan<uint> source, Span<ushort> destination, ushort nan)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && source.Length >= 2 * Vector<uint>.Count)
        {
            ref uint src = ref MemoryMarshal.GetReference(source);
            ref ushort dst = ref MemoryMarshal.GetReference(destination);
            var one = new Vector<uint>(1);
            var bias = new Vector<uint>(0x7FFF);
            var absMask = new Vector<uint>(0x7FFF_FFFF);
            var infinity = new Vector<uint>(0x7F80_0000);
            var nanBits = new Vector<uint>(nan);
            int step = 2 * Vector<uint>.Count;
            for (; i <= source.Length - step; i += step)
            {
                var lo = Vector.LoadUnsafe(ref src, (nuint)i);
                var hi = Vector.LoadUnsafe(ref src, (nuint)(i + Vector<uint>.Count));
                lo = RoundToBFloat16(lo, one, bias, absMask, infinity, nanBits);
                hi = RoundToBFloat16(hi, one, bias, absMask, infinity, nanBits);
                Vector.Narrow(lo, hi).StoreUnsafe(ref dst, (nuint)i);
            }
        }
        for (; i < source.Length; i++) destination[i] = FloatToBFloat16(source[i], nan);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<uint> RoundToBFloat16(Vector<uint> bits, Vector<uint> one, Vector<uint> bias, Vector<uint> absMask, Vector<uint> infinity, Vector<uint> nan)
    {
        var rounded = Vector.ShiftRightLogical(bits + bias + (Vector.ShiftRightLogical(bits, 16) & one), 16);
        var isNaN = Vector.GreaterThan(bits & absMask, infinity);
        return Vector.ConditionalSelect(isNaN, nan, rounded);
    }

    internal static ushort FloatToBFloat16(uint bits, ushort nan)
    {
        if ((bits & 0x7FFF_FFFF) > 0x7F80_0000) return nan;
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    // ---- float32 → float16 ----

    private const uint HalfOverflow = 143u << 23;     // 65536.0f: this and above (and NaN) leave the finite range
    private const uint HalfMinNormal = 113u << 23;    // 2^-14: below this the result is subnormal or zero
    private const uint HalfSubnormalMagic = 126u << 23; // 0.5f: its ulp is 2^-24, the float16 subnormal step
    private const uint HalfRebias = unchecked((uint)((15 - 127) << 23) + 0xFFF);

    internal static void FloatToHalf(ReadOnlySpan<uint> source, Span<ushort> destination)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && source.Length >= 2 * Vector<uint>.Count)
        {
            ref uint src = ref MemoryMarshal.GetReference(source);
            ref ushort dst = ref MemoryMarshal.GetReference(destination);
            int step = 2 * Vector<uint>.Count;
            for (; i <= source.Length - step; i += step)
            {
                var lo = RoundToHalf(Vector.LoadUnsafe(ref src, (nuint)i));
                var hi = RoundToHalf(Vector.LoadUnsafe(ref src, (nuint)(i + Vector<uint>.Count)));
                Vector.Narrow(lo, hi).StoreUnsafe(ref dst, (nuint)i);
            }
        }
        for (; i < source.Length; i++) destination[i] = FloatToHalf(source[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<uint> RoundToHalf(Vector<uint> bits)
    {
        var sign = bits & new Vector<uint>(0x8000_0000);
        var abs = bits ^ sign;
        // Inf stays Inf, finite overflow becomes Inf, NaN stays a NaN: quiet, with the top 10 bits of its payload, as
        // the F16C conversion that libtorch 2.x uses does.
        var nan = new Vector<uint>(0x7E00) | (Vector.ShiftRightLogical(abs, 13) & new Vector<uint>(0x3FF));
        var special = Vector.ConditionalSelect(Vector.GreaterThan(abs, new Vector<uint>(0x7F80_0000)), nan, new Vector<uint>(0x7C00));
        // Subnormal results: adding 0.5f rounds the value to a multiple of 2^-24 in the FPU's round-to-nearest-even.
        var magic = new Vector<uint>(HalfSubnormalMagic);
        var subnormal = Vector.AsVectorUInt32(Vector.AsVectorSingle(abs) + Vector.AsVectorSingle(magic)) - magic;
        // Normal results: rebias the exponent and round the 13 dropped bits to nearest even.
        var normal = Vector.ShiftRightLogical(abs + new Vector<uint>(HalfRebias) + (Vector.ShiftRightLogical(abs, 13) & Vector<uint>.One), 13);
        var finite = Vector.ConditionalSelect(Vector.LessThan(abs, new Vector<uint>(HalfMinNormal)), subnormal, normal);
        var result = Vector.ConditionalSelect(Vector.GreaterThanOrEqual(abs, new Vector<uint>(HalfOverflow)), special, finite);
        return result | Vector.ShiftRightLogical(sign, 16);
    }

    internal static ushort FloatToHalf(uint bits)
    {
        uint sign = bits & 0x8000_0000;
        uint abs = bits ^ sign;
        uint result;
        if (abs >= HalfOverflow) result = abs > 0x7F80_0000 ? 0x7E00u | ((abs >> 13) & 0x3FF) : 0x7C00u;
        else if (abs < HalfMinNormal) result = BitConverter.SingleToUInt32Bits(BitConverter.UInt32BitsToSingle(abs) + 0.5f) - HalfSubnormalMagic;
        else result = (abs + HalfRebias + ((abs >> 13) & 1)) >> 13;
        return (ushort)(result | (sign >> 16));
    }

    // ---- float16 → float32 ----

    internal static void HalfToFloat(ReadOnlySpan<ushort> source, Span<uint> destination)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && source.Length >= Vector<ushort>.Count)
        {
            ref ushort src = ref MemoryMarshal.GetReference(source);
            ref uint dst = ref MemoryMarshal.GetReference(destination);
            int step = Vector<ushort>.Count;
            for (; i <= source.Length - step; i += step)
            {
                Vector.Widen(Vector.LoadUnsafe(ref src, (nuint)i), out var lo, out var hi);
                WidenHalf(lo).StoreUnsafe(ref dst, (nuint)i);
                WidenHalf(hi).StoreUnsafe(ref dst, (nuint)(i + Vector<uint>.Count));
            }
        }
        for (; i < source.Length; i++) destination[i] = HalfToFloat(source[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<uint> WidenHalf(Vector<uint> h)
    {
        var sign = Vector.ShiftLeft(h & new Vector<uint>(0x8000), 16);
        var abs = h & new Vector<uint>(0x7FFF);
        var exponent = abs & new Vector<uint>(0x7C00);
        var normal = Vector.ShiftLeft(abs, 13) + new Vector<uint>(0x3800_0000);
        // Inf and NaN: all-ones exponent, payload kept, and a NaN made quiet.
        var mantissa = abs & new Vector<uint>(0x03FF);
        var quiet = Vector.AndNot(new Vector<uint>(0x0040_0000), Vector.Equals(mantissa, Vector<uint>.Zero));
        var special = new Vector<uint>(0x7F80_0000) | Vector.ShiftLeft(mantissa, 13) | quiet;
        // Subnormals (and zero): 0.5 + m·2^-24 minus 0.5 is exact.
        var magic = new Vector<uint>(0x3F00_0000);
        var subnormal = Vector.AsVectorUInt32(Vector.AsVectorSingle(mantissa | magic) - Vector.AsVectorSingle(magic));
        var result = Vector.ConditionalSelect(Vector.Equals(exponent, new Vector<uint>(0x7C00)), special,
            Vector.ConditionalSelect(Vector.Equals(exponent, Vector<uint>.Zero), subnormal, normal));
        return result | sign;
    }

    internal static uint HalfToFloat(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        uint abs = h & 0x7FFFu;
        uint exponent = abs & 0x7C00;
        uint mantissa = abs & 0x03FF;
        uint result;
        if (exponent == 0x7C00) result = 0x7F80_0000 | (mantissa << 13) | (mantissa != 0 ? 0x0040_0000u : 0);
        else if (exponent == 0) result = BitConverter.SingleToUInt32Bits(BitConverter.UInt32BitsToSingle(mantissa | 0x3F00_0000) - 0.5f);
        else result = (abs << 13) + 0x3800_0000;
        return result | sign;
    }

    // ---- bfloat16 → float32 ----

    internal static void BFloat16ToFloat(ReadOnlySpan<ushort> source, Span<uint> destination)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && source.Length >= Vector<ushort>.Count)
        {
            ref ushort src = ref MemoryMarshal.GetReference(source);
            ref uint dst = ref MemoryMarshal.GetReference(destination);
            int step = Vector<ushort>.Count;
            for (; i <= source.Length - step; i += step)
            {
                Vector.Widen(Vector.LoadUnsafe(ref src, (nuint)i), out var lo, out var hi);
                Vector.ShiftLeft(lo, 16).StoreUnsafe(ref dst, (nuint)i);
                Vector.ShiftLeft(hi, 16).StoreUnsafe(ref dst, (nuint)(i + Vector<uint>.Count));
            }
        }
        for (; i < source.Length; i++) destination[i] = (uint)source[i] << 16;
    }

    // ---- float64 → float32 ----

    internal static void DoubleToFloat(ReadOnlySpan<double> source, Span<float> destination)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && source.Length >= 2 * Vector<double>.Count)
        {
            ref double src = ref MemoryMarshal.GetReference(source);
            ref float dst = ref MemoryMarshal.GetReference(destination);
            int step = 2 * Vector<double>.Count;
            for (; i <= source.Length - step; i += step)
            {
                var lo = Vector.LoadUnsafe(ref src, (nuint)i);
                var hi = Vector.LoadUnsafe(ref src, (nuint)(i + Vector<double>.Count));
                Vector.Narrow(lo, hi).StoreUnsafe(ref dst, (nuint)i);
            }
        }
        for (; i < source.Length; i++) destination[i] = (float)source[i];
    }
}
