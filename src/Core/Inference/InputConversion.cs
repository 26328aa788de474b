using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace BigModel.Inference;

/// <summary>The decode kernel's conversions of inputs and outputs between 16-bit types and float32.</summary>
internal static unsafe class InputConversion
{
    /// <summary>
    /// float16 → float32 times <paramref name="scale"/> (a power of two). Vectorised with the same shift as the weights
    /// (<see cref="F16Weights"/>), which yields value·2⁻¹¹²; two exact multiplications bring it to value·scale.
    /// Blocks holding an infinity or NaN are converted element by element instead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void HalfToScaledSingle(ushort* source, float* destination, long count, float scale)
    {
        const float TwoTo112 = 5.192296858534828e33f;
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var up = Vector256.Create(TwoTo112);
            var by = Vector256.Create(scale);
            for (; i + 8 <= count; i += 8)
            {
                var special = Vector256<int>.Zero;
                var v = F16Weights.Load8((byte*)(source + i), ref special);
                if (F16Weights.IsSpecial(special))
                {
                    for (long j = i; j < i + 8; j++) destination[j] = (float)BitConverter.UInt16BitsToHalf(source[j]) * scale;
                    continue;
                }
                Vector256.Store(v * up * by, destination + i);
            }
        }
        for (; i < count; i++) destination[i] = (float)BitConverter.UInt16BitsToHalf(source[i]) * scale;
    }

    /// <summary>Whether any of <paramref name="count"/> float16 values is an infinity or NaN (exponent bits all ones).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool HasNonFiniteHalf(ushort* source, long count)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            // The kernel's watch on float16 weights: the doubled bits (sign dropped), judged by F16Weights.IsSpecial.
            var highest = Vector256<ushort>.Zero;
            for (; i + 16 <= count; i += 16) highest = Vector256.Max(highest, Vector256.Load(source + i) << 1);
            if (F16Weights.IsSpecial(highest)) return true;
        }
        for (; i < count; i++)
            if ((source[i] & 0x7C00) == 0x7C00) return true;
        return false;
    }

    /// <summary>bfloat16 → float32: the bits shifted into the upper half.</summary>
    public static void BF16ToSingle(ushort* source, float* destination, long count)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var none = Vector256<int>.Zero;
            for (; i + 8 <= count; i += 8) Vector256.Store(BF16Weights.Load8((byte*)(source + i), ref none), destination + i);
        }
        for (; i < count; i++) destination[i] = BitConverter.Int32BitsToSingle(source[i] << 16);
    }

    /// <summary>
    /// Puts each of <paramref name="rows"/> rows of <paramref name="columns"/> inputs in the order <paramref name="format"/>'s
    /// 256-bit loops widen weights in (<see cref="IWeightFormat.Slot"/>): in every full block of 16, float16 puts the
    /// even elements before the odd ones and bfloat16 swaps elements 4–7 with 8–11; the remainder of a row stays in order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Interleave(WeightFormat format, float* x, int rows, long columns)
    {
        var evenThenOdd = Vector256.Create(0, 2, 4, 6, 1, 3, 5, 7);
        for (int r = 0; r < rows; r++)
        {
            float* row = x + r * columns;
            for (long i = 0; i + 16 <= columns; i += 16)
            {
                if (format == WeightFormat.F16)
                {
                    var first = Vector256.Shuffle(Vector256.Load(row + i), evenThenOdd);
                    var second = Vector256.Shuffle(Vector256.Load(row + i + 8), evenThenOdd);
                    Vector256.Create(first.GetLower(), second.GetLower()).Store(row + i);
                    Vector256.Create(first.GetUpper(), second.GetUpper()).Store(row + i + 8);
                }
                else
                {
                    var quad = Vector128.Load(row + i + 4);
                    Vector128.Load(row + i + 8).Store(row + i + 4);
                    quad.Store(row + i + 8);
                }
            }
        }
    }

    /// <summary>
    /// Rounds each float32 to the nearest float16 value (ties to even, subnormals, overflow to infinity), kept as
    /// float32: exactly <c>(float)(Half)v</c>, the rounding libtorch applies whenever a half-precision operation
    /// stores its result. Vectorised with integer arithmetic on the bits, since .NET exposes no conversion
    /// instruction.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RoundToHalf(float* values, long count)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var signMask = Vector256.Create(0x80000000u);
            var infinity = Vector256.Create(0x7F800000u);
            var overflow = Vector256.Create(0x477FF000u);       // 65520: from here on, the rounding goes past 65504
            var smallest = Vector256.Create(0x38800000u);       // 2⁻¹⁴: below it, half steps are 2⁻²⁴ apart
            var half = Vector256.Create(0.5f);
            for (; i + 8 <= count; i += 8)
            {
                var bits = Vector256.Load((uint*)(values + i));
                var sign = bits & signMask;
                var magnitude = bits & ~signMask;
                // Normal range: round the mantissa to 10 bits, ties to even (a carry moves into the exponent).
                var normal = (magnitude + Vector256.Create(0xFFFu) + ((magnitude >> 13) & Vector256<uint>.One)) & Vector256.Create(0xFFFFE000u);
                // Subnormal range: adding 0.5 (whose last bit is worth 2⁻²⁴) lets the hardware round to that step.
                var tiny = ((magnitude.AsSingle() + half) - half).AsUInt32();
                var rounded = Vector256.ConditionalSelect(Vector256.LessThan(magnitude, smallest), tiny, normal);
                rounded = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, overflow), infinity, rounded);
                // Infinities and NaNs pass through unchanged.
                rounded = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, infinity), magnitude, rounded);
                (rounded | sign).Store((uint*)(values + i));
            }
        }
        for (; i < count; i++) values[i] = (float)(Half)values[i];
    }

    /// <summary>
    /// Stores float32 values that are already float16 values (<see cref="RoundToHalf"/> ran on them) as float16 bits:
    /// <c>(Half)v</c>, vectorised. Multiplying by 2⁻¹¹² moves a half's exponent range onto the bottom of float32's
    /// (subnormal halves become subnormal floats, exactly), so the bits shifted right by 13 are the half's. Infinities
    /// and NaNs are set apart. A value that is not a float16 value would be truncated, not rounded.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void HalfValuesToHalf(float* source, ushort* destination, long count)
    {
        const float TwoToMinus112 = 1.925929944387236e-34f;
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var magnitudeMask = Vector256.Create(0x7FFFFFFFu);
            var infinity = Vector256.Create(0x7F800000u);
            var down = Vector256.Create(TwoToMinus112);
            for (; i + 16 <= count; i += 16)
            {
                var low = Bits(Vector256.Load((uint*)(source + i)));
                var high = Bits(Vector256.Load((uint*)(source + i + 8)));
                Vector256.Narrow(low, high).Store(destination + i);
            }

            Vector256<uint> Bits(Vector256<uint> bits)
            {
                var magnitude = bits & magnitudeMask;
                var half = (magnitude.AsSingle() * down).AsUInt32() >> 13;
                half = Vector256.ConditionalSelect(Vector256.Equals(magnitude, infinity), Vector256.Create(0x7C00u), half);
                half = Vector256.ConditionalSelect(Vector256.GreaterThan(magnitude, infinity), Vector256.Create(0x7E00u), half);
                return half | ((bits >> 16) & Vector256.Create(0x8000u));
            }
        }
        for (; i < count; i++) destination[i] = BitConverter.HalfToUInt16Bits((Half)source[i]);
    }

    /// <summary>Rounds each float32 to the nearest bfloat16 value (ties to even), kept as float32; NaN stays NaN.</summary>
    public static void RoundToBF16(float* values, long count)
    {
        for (long i = 0; i < count; i++) values[i] = BitConverter.UInt32BitsToSingle((uint)SingleToBF16(values[i]) << 16);
    }

    /// <summary>float32 → bfloat16, rounding to nearest even; NaN stays a (quiet) NaN.</summary>
    public static ushort SingleToBF16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        bits += 0x7FFF + ((bits >> 16) & 1);
        return (ushort)(bits >> 16);
    }
}
