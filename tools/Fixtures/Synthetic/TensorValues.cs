using System.Buffers.Binary;
using System.Text;
using BigModel.Checkpoints;
using BigModel.Errors;

namespace BigModel.Fixtures.Synthetic;

/// <summary>
/// Deterministic pseudo-random tensor contents. Element <c>i</c> of a tensor depends only on the seed, the tensor's
/// name and <c>i</c>: a counter-based generator (SplitMix64 of a key derived from seed and name, plus the element
/// pair's index) feeds a Box-Muller transform. Any chunking, sharding or thread split therefore yields the same
/// values, and any element can be recomputed independently (e.g. by a reference script).
/// </summary>
public static class TensorValues
{
    private const ulong Golden = 0x9E3779B97F4A7C15UL;

    /// <summary>The per-tensor key: FNV-1a 64 of the UTF-8 name, mixed with the seed.</summary>
    public static ulong Key(ulong seed, string name)
    {
        ulong hash = 0xCBF29CE484222325UL;
        foreach (var b in Encoding.UTF8.GetBytes(name))
        {
            hash ^= b;
            hash *= 0x100000001B3UL;
        }
        return Mix(hash ^ Mix(seed + Golden));
    }

    /// <summary>SplitMix64's output function.</summary>
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Standard normal value of element <paramref name="index"/> for <paramref name="key"/>.</summary>
    public static float StandardNormal(ulong key, long index)
    {
        var (z0, z1) = Pair(key, index >> 1);
        return (index & 1) == 0 ? z0 : z1;
    }

    /// <summary>
    /// The two standard normal values of element pair <paramref name="pair"/> (elements 2p and 2p+1): one 64-bit
    /// draw, whose high 24 bits pick the radius (kept away from zero so the log is finite) and next 24 the angle.
    /// Single precision is ample for values that are stored as 32 bits or fewer, and twice as fast.
    /// </summary>
    public static (float Z0, float Z1) Pair(ulong key, long pair)
    {
        ulong bits = Mix(key + ((ulong)pair + 1) * Golden);
        float u1 = ((bits >> 40) + 0.5f) * (1f / 16777216f);
        float u2 = ((bits >> 16) & 0xFFFFFF) * (1f / 16777216f);
        float r = MathF.Sqrt(-2f * MathF.Log(u1));
        var (sin, cos) = MathF.SinCos(2f * MathF.PI * u2);
        return (r * cos, r * sin);
    }

    /// <summary>
    /// Fills <paramref name="destination"/> with <c>mean + std × N(0, 1)</c> for elements
    /// <paramref name="start"/>.. of the tensor keyed <paramref name="key"/>.
    /// </summary>
    public static void Fill(ulong key, long start, Span<float> destination, float mean, float std)
    {
        int i = 0;
        long index = start;
        // An odd start takes the second value of its pair alone; then whole pairs share one draw.
        if ((index & 1) == 1 && destination.Length > 0)
        {
            destination[i++] = mean + std * Pair(key, index >> 1).Z1;
            index++;
        }
        for (; i + 1 < destination.Length; i += 2, index += 2)
        {
            var (z0, z1) = Pair(key, index >> 1);
            destination[i] = mean + std * z0;
            destination[i + 1] = mean + std * z1;
        }
        if (i < destination.Length) destination[i] = mean + std * Pair(key, index >> 1).Z0;
    }

    /// <summary>Encodes floats as <paramref name="dtype"/> little-endian bytes (F16 and BF16 round to nearest even).</summary>
    public static void Encode(ReadOnlySpan<float> values, DType dtype, Span<byte> destination)
    {
        switch (dtype)
        {
            case DType.F32 when BitConverter.IsLittleEndian:
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).CopyTo(destination);
                break;
            case DType.F32:
                for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(destination[(i * 4)..], values[i]);
                break;
            case DType.F16:
                for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteHalfLittleEndian(destination[(i * 2)..], (Half)values[i]);
                break;
            case DType.BF16:
                for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(destination[(i * 2)..], ToBFloat16(values[i]));
                break;
            default:
                throw new BigModelException(BigModelErrorCode.InvalidDType, $"synthetic weights are F32, F16 or BF16, not {dtype}.");
        }
    }

    /// <summary>float → bfloat16 bits, round to nearest even (NaN stays NaN), as torch converts.</summary>
    public static ushort ToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }
}
