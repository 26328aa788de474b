using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BigModel.Inference;

/// <summary>Element types the decode kernel reads weights in.</summary>
internal enum WeightFormat
{
    F32,
    F16,
    BF16,
}

/// <summary>
/// How the decode kernel turns stored weights into float32 lanes while streaming them. Implemented by structs so
/// that the generic loops are compiled once per format with the conversion inlined.
/// <para>
/// float16 is widened with integer operations only (.NET exposes no F16C conversion): the sign-extended half shifted
/// left by 13 and masked is <c>sign | exponent·mantissa &lt;&lt; 13</c>, which as a float32 is exactly the weight times
/// 2⁻¹¹², zeros and subnormals included. The inputs are multiplied by 2⁵⁶ instead and the sums by 2⁵⁶ at the end:
/// powers of two, so every product and partial sum is the unscaled one shifted by an exponent, rounded identically
/// (anything that would differ lies below 2⁻⁷⁰). Infinities and NaNs are the one case the shift gets wrong; their
/// exponent field is all ones, which the loops watch for, recomputing such rows exactly.
/// </para>
/// </summary>
internal unsafe interface IWeightFormat
{
    static abstract int ElementBytes { get; }

    /// <summary>Factor the inputs are multiplied by (and the sums divided by) for this format.</summary>
    static abstract float InputScale { get; }

    /// <summary>8 weights at <paramref name="p"/> in the scaled domain; <paramref name="special"/> gathers the infinity/NaN check.</summary>
    static abstract Vector256<float> Load8(byte* p, ref Vector256<int> special);

    /// <summary>16 weights at <paramref name="p"/>, as <see cref="Load8"/>.</summary>
    static abstract Vector512<float> Load16(byte* p, ref Vector512<int> special);

    /// <summary>One weight in the scaled domain (for row tails).</summary>
    static abstract float LoadOne(byte* p, ref int special);

    /// <summary>One weight's exact value, infinities and NaNs included.</summary>
    static abstract float Exact(byte* p);

    static abstract bool IsSpecial(Vector256<int> special);

    /// <summary>
    /// True for 16-bit formats, whose 256-bit loops read 16 weights with one load and widen them in place
    /// (<see cref="Load16Interleaved"/>) without restoring their order: fewer instructions per byte than widening 8
    /// at a time, which is what a memory-bound loop on a busy core runs out of. The inputs are put in the same order
    /// instead, once per call (<see cref="InputConversion.Interleave"/>).
    /// </summary>
    static abstract bool Interleaves { get; }

    /// <summary>
    /// Where <see cref="Load16Interleaved"/> puts element <paramref name="i"/> (0–15) of a block of 16: lanes 0–7 of
    /// its low vector, then 8–15 of its high one.
    /// </summary>
    static abstract int Slot(int i);

    /// <summary>
    /// 16 weights at <paramref name="p"/> in the scaled domain, in the order <see cref="Slot"/> gives.
    /// <paramref name="special"/> gathers the infinity/NaN check on the raw halves.
    /// </summary>
    static abstract void Load16Interleaved(byte* p, out Vector256<float> low, out Vector256<float> high, ref Vector256<ushort> special);

    static abstract bool IsSpecial(Vector256<ushort> special);

    static abstract bool IsSpecial(Vector512<int> special);

    static abstract bool IsSpecial(int special);
}

internal readonly unsafe struct F32Weights : IWeightFormat
{
    public static int ElementBytes => 4;
    public static float InputScale => 1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p, ref Vector256<int> special) => Vector256.Load((float*)p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* p, ref Vector512<int> special) => Vector512.Load((float*)p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadOne(byte* p, ref int special) => *(float*)p;

    public static float Exact(byte* p) => *(float*)p;

    public static bool Interleaves => false;

    public static int Slot(int i) => QuadSlot(i);

    /// <summary>Elements (0–3, 8–11) and (4–7, 12–15) from two loads and two lane permutes (the loops read float32 in order instead).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16Interleaved(byte* p, out Vector256<float> low, out Vector256<float> high, ref Vector256<ushort> special)
    {
        var first = Vector256.Load((float*)p);
        var second = Vector256.Load((float*)p + 8);
        low = Avx2.Permute2x128(first, second, 0x20);
        high = Avx2.Permute2x128(first, second, 0x31);
    }

    public static bool IsSpecial(Vector256<ushort> special) => false;

    public static bool IsSpecial(Vector256<int> special) => false;
    public static bool IsSpecial(Vector512<int> special) => false;
    public static bool IsSpecial(int special) => false;

    /// <summary>Elements 4–7 and 8–11 swapped: the order the in-lane unpack instructions leave 16 halves in.</summary>
    internal static int QuadSlot(int i) => (i & ~12) | ((i & 4) << 1) | ((i & 8) >> 1);
}

/// <summary>bfloat16 is the upper half of a float32: widening and shifting is exact for every value.</summary>
internal readonly unsafe struct BF16Weights : IWeightFormat
{
    public static int ElementBytes => 2;
    public static float InputScale => 1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p, ref Vector256<int> special)
    {
        Vector256<int> wide = Avx2.IsSupported
            ? Avx2.ConvertToVector256Int32((ushort*)p)
            : Vector256.WidenLower(Vector128.Load((ushort*)p).ToVector256Unsafe()).AsInt32();
        return Vector256.ShiftLeft(wide, 16).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* p, ref Vector512<int> special)
    {
        var half = Vector256.Load((ushort*)p);
        Vector512<int> wide = Avx512F.IsSupported
            ? Avx512F.ConvertToVector512Int32(half)
            : Vector512.Create(Vector256.WidenLower(half), Vector256.WidenUpper(half)).AsInt32();
        return Vector512.ShiftLeft(wide, 16).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadOne(byte* p, ref int special) => BitConverter.Int32BitsToSingle(*(ushort*)p << 16);

    public static float Exact(byte* p) => BitConverter.Int32BitsToSingle(*(ushort*)p << 16);

    public static bool Interleaves => true;

    public static int Slot(int i) => F32Weights.QuadSlot(i);

    /// <summary>Each half unpacked above a zero half: the float32 with those upper bits, elements (0–3, 8–11) and (4–7, 12–15).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16Interleaved(byte* p, out Vector256<float> low, out Vector256<float> high, ref Vector256<ushort> special)
    {
        var raw = Vector256.Load((ushort*)p);
        low = Avx2.UnpackLow(Vector256<ushort>.Zero, raw).AsSingle();
        high = Avx2.UnpackHigh(Vector256<ushort>.Zero, raw).AsSingle();
    }

    public static bool IsSpecial(Vector256<ushort> special) => false;

    public static bool IsSpecial(Vector256<int> special) => false;
    public static bool IsSpecial(Vector512<int> special) => false;
    public static bool IsSpecial(int special) => false;
}

/// <summary>IEEE float16, widened in the scaled domain described on <see cref="IWeightFormat"/>.</summary>
internal readonly unsafe struct F16Weights : IWeightFormat
{
    private const int SignAndBits = unchecked((int)0x8FFFFFFF);
    private const int Magnitude = 0x0FFFFFFF;
    /// <summary>The exponent field of a half (all ones: infinity or NaN) shifted into place: magnitudes at or above it are special.</summary>
    private const int ExponentAllOnes = 0x0F800000;

    public static int ElementBytes => 2;

    /// <summary>2⁵⁶: the weights arrive scaled by 2⁻¹¹², so the products are the true ones times 2⁻⁵⁶.</summary>
    public static float InputScale => 72057594037927936f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p, ref Vector256<int> special)
    {
        var shifted = Shifted8(p);
        special = Vector256.Max(special, shifted & Vector256.Create(Magnitude));
        return Scaled(shifted);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* p, ref Vector512<int> special)
    {
        var shifted = Shifted16(p);
        special = Vector512.Max(special, shifted & Vector512.Create(Magnitude));
        return Scaled(shifted);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadOne(byte* p, ref int special)
    {
        int shifted = *(short*)p << 13;
        special = Math.Max(special, shifted & Magnitude);
        return BitConverter.Int32BitsToSingle(shifted & SignAndBits);
    }

    /// <summary>8 halves sign-extended to 32 bits and shifted left by 13.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> Shifted8(byte* p)
    {
        Vector256<int> wide = Avx2.IsSupported
            ? Avx2.ConvertToVector256Int32((short*)p)
            : Vector256.WidenLower(Vector128.Load((short*)p).ToVector256Unsafe());
        return Vector256.ShiftLeft(wide, 13);
    }

    /// <summary>16 halves sign-extended to 32 bits and shifted left by 13.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<int> Shifted16(byte* p)
    {
        var half = Vector256.Load((short*)p);
        Vector512<int> wide = Avx512F.IsSupported
            ? Avx512F.ConvertToVector512Int32(half)
            : Vector512.Create(Vector256.WidenLower(half), Vector256.WidenUpper(half));
        return Vector512.ShiftLeft(wide, 13);
    }

    /// <summary>The shifted halves masked to sign and exponent·mantissa: the weights in the scaled domain.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Scaled(Vector256<int> shifted) => (shifted & Vector256.Create(SignAndBits)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Scaled(Vector512<int> shifted) => (shifted & Vector512.Create(SignAndBits)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Scaled(short half) => BitConverter.Int32BitsToSingle((half << 13) & SignAndBits);

    public static float Exact(byte* p) => (float)BitConverter.UInt16BitsToHalf(*(ushort*)p);

    public static bool Interleaves => true;

    /// <summary>Even elements, then odd ones.</summary>
    public static int Slot(int i) => (i >> 1) | ((i & 1) << 3);

    /// <summary>
    /// The 16 halves read as 8 pairs in 32-bit lanes and widened where they lie, with no shuffle: an arithmetic shift
    /// right by 3 puts the upper half's sign, exponent and mantissa where float32 has <c>sign | exponent·mantissa &lt;&lt; 13</c>
    /// (the mask drops the copies of the sign and the lower half's bits); shifted left by 16 first, the lower half
    /// gets the same. That is 3 shifts and 2 masks per 16 weights where unpacking them in order took 2 shifts, a
    /// mask and 2 shuffles, on the same two ports; measured 5 % faster streaming from memory on two cores. An
    /// infinity or NaN is a half whose doubled bits are at least 0xF800.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16Interleaved(byte* p, out Vector256<float> low, out Vector256<float> high, ref Vector256<ushort> special)
    {
        var pairs = Vector256.Load((int*)p);
        Widen(pairs, out low, out high);
        special = Vector256.Max(special, Vector256.ShiftLeft(pairs.AsUInt16(), 1));
    }

    /// <summary>8 pairs of halves as their even (lower) and odd (upper) halves in the scaled domain.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Widen(Vector256<int> pairs, out Vector256<float> even, out Vector256<float> odd)
    {
        var mask = Vector256.Create(PairMask);
        even = (Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(pairs, 16), 3) & mask).AsSingle();
        odd = (Vector256.ShiftRightArithmetic(pairs, 3) & mask).AsSingle();
    }

    /// <summary>The sign and the 15 bits of exponent·mantissa, shifted right by 3 from the top of a 32-bit lane.</summary>
    private const int PairMask = unchecked((int)0x8FFFE000);

    public static bool IsSpecial(Vector256<ushort> special) => Vector256.GreaterThanOrEqualAny(special, Vector256.Create((ushort)0xF800));

    public static bool IsSpecial(Vector256<int> special) => Vector256.GreaterThanOrEqualAny(special, Vector256.Create(ExponentAllOnes));
    public static bool IsSpecial(Vector512<int> special) => Vector512.GreaterThanOrEqualAny(special, Vector512.Create(ExponentAllOnes));
    public static bool IsSpecial(int special) => special >= ExponentAllOnes;
}

/// <summary>
/// float16 weights the kernel has already read once without meeting an infinity or NaN: widened as
/// <see cref="F16Weights"/> but without watching for them. That watch costs two of the nine vector operations per
/// 16 weights, which on a core streaming 16-bit weights is what sets the pace; a weight that stays in memory for
/// the whole session (resident or mapped) is checked on its first use and trusted after (see <see cref="DecodeKernel"/>).
/// </summary>
internal readonly unsafe struct F16FiniteWeights : IWeightFormat
{
    public static int ElementBytes => 2;
    public static float InputScale => F16Weights.InputScale;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p, ref Vector256<int> special) => F16Weights.Scaled(F16Weights.Shifted8(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* p, ref Vector512<int> special) => F16Weights.Scaled(F16Weights.Shifted16(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadOne(byte* p, ref int special) => F16Weights.Scaled(*(short*)p);

    public static float Exact(byte* p) => F16Weights.Exact(p);

    public static bool Interleaves => true;

    public static int Slot(int i) => F16Weights.Slot(i);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16Interleaved(byte* p, out Vector256<float> low, out Vector256<float> high, ref Vector256<ushort> special) =>
        F16Weights.Widen(Vector256.Load((int*)p), out low, out high);

    public static bool IsSpecial(Vector256<ushort> special) => false;
    public static bool IsSpecial(Vector256<int> special) => false;
    public static bool IsSpecial(Vector512<int> special) => false;
    public static bool IsSpecial(int special) => false;
}
