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
    /// Puts each of <paramref name="rows"/> rows of <paramref name="columns"/> inputs in the order the 16-bit weight
    /// loops widen weights in (<see cref="IWeightFormat.Load16Interleaved"/>): in every full block of 16, elements
    /// 4–7 and 8–11 swap places; the remainder of a row stays in order.
    /// </summary>
    public static void Interleave(float* x, int rows, long columns)
    {
        for (int r = 0; r < rows; r++)
        {
            float* row = x + r * columns;
            for (long i = 0; i + 16 <= columns; i += 16)
            {
                var second = Vector128.Load(row + i + 4);
                Vector128.Load(row + i + 8).Store(row + i + 4);
                second.Store(row + i + 8);
            }
        }
    }

    /// <summary>
    /// Rounds each float32 to the nearest float16 value (ties to even, subnormals, overflow to infinity), kept as
    /// float32: exactly <c>(float)(Half)v</c>, the rounding libtorch applies whenever a half-precision operation
    /// stores its result. Vectorised with integer arithmetic on the bits, since .NET exposes no conversion
    /// instruction.
    /// </summary>
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
