using BigModel.Inference;

namespace BigModel.Tests.Inference;

/// <summary>The kernel's conversions between float32 and the 16-bit types.</summary>
public sealed unsafe class InputConversionTests
{
    [Fact]
    public void Rounding_to_half_equals_the_runtime_conversion_for_every_kind_of_value()
    {
        var values = new List<float>
        {
            0f, -0f, 1f, -1f, 65504f, 65519.99f, 65520f, 65536f, 1e10f, -1e10f, float.MaxValue, float.Epsilon,
            MathF.Pow(2, -14), MathF.Pow(2, -14) * 0.99999f, MathF.Pow(2, -24), MathF.Pow(2, -25), 3 * MathF.Pow(2, -25),
            MathF.Pow(2, -26), 1.0009765625f + MathF.Pow(2, -11), 1f + 3 * MathF.Pow(2, -11), // ties: to even, both ways
            float.PositiveInfinity, float.NegativeInfinity, float.NaN, BitConverter.UInt32BitsToSingle(0x7F800001),
        };
        var random = new Random(7);
        for (int i = 0; i < 200_000; i++) values.Add(BitConverter.UInt32BitsToSingle((uint)random.NextInt64(0, 1L << 32)));
        // Magnitudes around the half range, where the interesting boundaries are.
        for (int i = 0; i < 200_000; i++) values.Add((float)((random.NextDouble() * 2 - 1) * Math.Pow(2, random.Next(-30, 18))));
        var rounded = values.ToArray();
        fixed (float* p = rounded) InputConversion.RoundToHalf(p, rounded.Length);
        for (int i = 0; i < values.Count; i++)
        {
            float expected = (float)(Half)values[i];
            if (float.IsNaN(expected)) Assert.True(float.IsNaN(rounded[i]), $"{values[i]:R} should stay NaN");
            else Assert.True(BitConverter.SingleToUInt32Bits(expected) == BitConverter.SingleToUInt32Bits(rounded[i]),
                $"{values[i]:R} (0x{BitConverter.SingleToUInt32Bits(values[i]):X8}) rounded to {rounded[i]:R}, expected {expected:R}");
        }
    }

    [Fact]
    public void Storing_half_values_gives_the_runtime_bits_for_every_float16()
    {
        // Every float16 bit pattern, widened, then stored back (an odd count leaves a tail for the scalar loop).
        var values = new float[65536 + 5];
        for (int bits = 0; bits < 65536; bits++) values[bits] = (float)BitConverter.UInt16BitsToHalf((ushort)bits);
        for (int i = 65536; i < values.Length; i++) values[i] = -3.5f * (i - 65535);
        var stored = new ushort[values.Length];
        fixed (float* source = values)
        fixed (ushort* destination = stored)
            InputConversion.HalfValuesToHalf(source, destination, values.Length);
        for (int i = 0; i < values.Length; i++)
        {
            var expected = (Half)values[i];
            if (Half.IsNaN(expected)) Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(stored[i])), $"0x{i:X4} should stay NaN");
            else Assert.True(BitConverter.HalfToUInt16Bits(expected) == stored[i], $"{values[i]:R} stored as 0x{stored[i]:X4}, expected 0x{BitConverter.HalfToUInt16Bits(expected):X4}");
        }
    }

    [Fact]
    public void Rounding_to_bfloat16_keeps_the_upper_half_rounded_to_even()
    {
        float[] values = [1f, 1f + MathF.Pow(2, -8), 1f + 3 * MathF.Pow(2, -8), 1f + MathF.Pow(2, -9), float.PositiveInfinity, float.NaN, -2.5f];
        float[] expected = [1f, 1f, 1f + 4 * MathF.Pow(2, -8), 1f, float.PositiveInfinity, float.NaN, -2.5f];
        fixed (float* p = values) InputConversion.RoundToBF16(p, values.Length);
        for (int i = 0; i < values.Length; i++)
            Assert.True(float.IsNaN(expected[i]) ? float.IsNaN(values[i]) : expected[i] == values[i], $"element {i}: {values[i]:R}, expected {expected[i]:R}");
    }
}
