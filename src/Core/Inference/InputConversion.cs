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

    /// <summary>float32 → bfloat16, rounding to nearest even; NaN stays a (quiet) NaN.</summary>
    public static ushort SingleToBF16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        bits += 0x7FFF + ((bits >> 16) & 1);
        return (ushort)(bits >> 16);
    }
}
