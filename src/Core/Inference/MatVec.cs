using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BigModel.Inference;

/// <summary>
/// The decode kernel's arithmetic: dot products of weight rows with up to a few input rows, in float32, reading each
/// weight once. A matrix-vector product is bound by memory bandwidth, not arithmetic, so the loops are shaped for
/// streaming: four rows at a time share each load of the input and keep eight independent accumulators in flight,
/// 16-bit weights are widened in registers (never copied to a float buffer), and row tails that are not a multiple
/// of the vector width are finished element by element instead of reading past the row, which for the last row of a
/// mapped checkpoint could be past the end of the mapping.
/// </summary>
internal static unsafe class MatVec
{
    /// <summary>The vector width the hardware runs natively: 512 or 256 bits; 0 when neither (the kernel is then not used).</summary>
    public static int HardwareWidth { get; } =
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? 512
        : Avx2.IsSupported && Fma.IsSupported ? 256
        : 0;

    /// <summary>Factor the inputs must be scaled by for <paramref name="format"/> (see <see cref="IWeightFormat"/>).</summary>
    public static float InputScale(WeightFormat format) => format switch
    {
        WeightFormat.F16 => F16Weights.InputScale,
        _ => 1f,
    };

    /// <summary>
    /// <c>y[j·yStride + (n − from)] = Σₖ w[n, k] · x[j·xStride + k] / s</c> for rows n in [from, to) and input rows
    /// j in [0, m), where <paramref name="x"/> holds the inputs multiplied by s = <see cref="InputScale"/>: the true
    /// products of the weights and the unscaled inputs.
    /// <paramref name="width"/> picks the vector width (256 or 512; a width the hardware lacks runs emulated, for tests).
    /// <paramref name="finite"/> says the weights are known to hold no infinity or NaN (float16 then skips the watch
    /// for them). Returns whether a row held one (and was summed exactly).
    /// </summary>
    public static bool Rows(WeightFormat format, bool finite, int width, byte* w, long k, int from, int to, float* x, long xStride, int m, float* y, long yStride) =>
        format switch
        {
            WeightFormat.F32 => Rows<F32Weights>(width, w, k, from, to, x, xStride, m, y, yStride),
            WeightFormat.F16 when finite => Rows<F16FiniteWeights>(width, w, k, from, to, x, xStride, m, y, yStride),
            WeightFormat.F16 => Rows<F16Weights>(width, w, k, from, to, x, xStride, m, y, yStride),
            WeightFormat.BF16 => Rows<BF16Weights>(width, w, k, from, to, x, xStride, m, y, yStride),
            _ => throw new ArgumentOutOfRangeException(nameof(format)),
        };

    /// <summary>Whether the loops for <paramref name="format"/> at <paramref name="width"/> bits expect interleaved inputs (<see cref="InputConversion.Interleave"/>).</summary>
    public static bool InterleavesInputs(WeightFormat format, int width) => width == 256 && format != WeightFormat.F32;

    private static bool Rows<T>(int width, byte* w, long k, int from, int to, float* x, long xStride, int m, float* y, long yStride)
        where T : struct, IWeightFormat
    {
        long rowBytes = k * T.ElementBytes;
        bool interleaved = width == 256 && T.Interleaves;
        // Loaded weights carry a factor of InputScale⁻² (see IWeightFormat), so the sums come out divided by InputScale.
        float unscale = T.InputScale;
        bool any = false;
        if (m == 1)
        {
            int n = from;
            // Four rows at a time share each load of the input. 16-bit rows at 256 bits go one at a time instead: a
            // block's rows are then one sequential stream, which measured 8 % faster than four interleaved streams
            // of half-length rows, while the shared input loads gain nothing there (the input sits in L1).
            if (width == 512 || !T.Interleaves)
            {
                for (; n + 4 <= to; n += 4)
                {
                    byte* row = w + n * rowBytes;
                    float* dst = y + (n - from);
                    bool special = width == 512 ? Dot4x512<T>(row, rowBytes, k, x, dst) : Dot4x256<T>(row, rowBytes, k, x, dst);
                    any |= special;
                    for (int r = 0; r < 4; r++)
                        dst[r] = special ? Exact<T>(row + r * rowBytes, k, x, interleaved) : dst[r] * unscale;
                }
            }
            for (; n < to; n++)
            {
                byte* row = w + n * rowBytes;
                float sum = width == 512 ? Dot1x512<T>(row, k, x, out bool special) : Dot1x256<T>(row, k, x, out special);
                any |= special;
                y[n - from] = special ? Exact<T>(row, k, x, interleaved) : sum * unscale;
            }
            return any;
        }
        // A few input rows (a short prompt): each weight row comes from memory once and from the L1/L2 cache for
        // the other inputs.
        for (int n = from; n < to; n++)
        {
            byte* row = w + n * rowBytes;
            for (int j = 0; j < m; j++)
            {
                float* xj = x + j * xStride;
                float sum = width == 512 ? Dot1x512<T>(row, k, xj, out bool special) : Dot1x256<T>(row, k, xj, out special);
                any |= special;
                y[j * yStride + (n - from)] = special ? Exact<T>(row, k, xj, interleaved) : sum * unscale;
            }
        }
        return any;
    }

    /// <summary>
    /// Asks for the bytes the next rows will need while these stream (the next 4-row group, or the next row, spread
    /// evenly over this one's iterations). Rows of a few kilobytes are too short for the hardware prefetchers to get
    /// ahead on their own: measured here, 16-bit weights streamed at half the read bandwidth without this, and at
    /// most of it with. float32 rows are twice as long, which the hardware copes with, and there the extra
    /// instructions cost more than they bring. Past the last row it names memory that is never read; a prefetch
    /// never faults.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Ahead<T>(byte* p, long bytes) where T : struct, IWeightFormat
    {
        if (!Sse.IsSupported || T.ElementBytes != 2) return;
        for (long b = 0; b < bytes; b += 64) Sse.Prefetch0(p + b);
    }

    /// <summary>A row with an infinite or NaN weight, summed exactly as stored (in double, then rounded).</summary>
    private static float Exact<T>(byte* row, long k, float* x, bool interleaved) where T : struct, IWeightFormat
    {
        double unscale = 1.0 / T.InputScale, sum = 0;
        long blocked = interleaved ? k / 16 * 16 : 0;
        for (long i = 0; i < k; i++)
        {
            // Interleaved inputs hold each full block of 16 in the order the format widens it.
            long at = i < blocked ? (i & ~15L) | (long)T.Slot((int)(i & 15)) : i;
            sum += (double)T.Exact(row + i * T.ElementBytes) * (x[at] * unscale);
        }
        return (float)sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool Dot4x256<T>(byte* w0, long rowBytes, long k, float* x, float* y) where T : struct, IWeightFormat
    {
        byte* w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes;
        long eb = T.ElementBytes;
        var special = Vector256<int>.Zero;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        long i = 0;
        if (T.Interleaves)
        {
            var raw = Vector256<ushort>.Zero;
            for (; i + 16 <= k; i += 16)
            {
                var x0 = Vector256.Load(x + i);
                var x1 = Vector256.Load(x + i + 8);
                long o = i * eb;
                Ahead<T>(w3 + rowBytes + 4 * o, 64 * eb);
                T.Load16Interleaved(w0 + o, out var l0, out var h0, ref raw);
                a0 = Vector256.FusedMultiplyAdd(l0, x0, a0);
                b0 = Vector256.FusedMultiplyAdd(h0, x1, b0);
                T.Load16Interleaved(w1 + o, out var l1, out var h1, ref raw);
                a1 = Vector256.FusedMultiplyAdd(l1, x0, a1);
                b1 = Vector256.FusedMultiplyAdd(h1, x1, b1);
                T.Load16Interleaved(w2 + o, out var l2, out var h2, ref raw);
                a2 = Vector256.FusedMultiplyAdd(l2, x0, a2);
                b2 = Vector256.FusedMultiplyAdd(h2, x1, b2);
                T.Load16Interleaved(w3 + o, out var l3, out var h3, ref raw);
                a3 = Vector256.FusedMultiplyAdd(l3, x0, a3);
                b3 = Vector256.FusedMultiplyAdd(h3, x1, b3);
            }
            if (T.IsSpecial(raw)) special = Vector256.Create(int.MaxValue);
        }
        for (; i + 16 <= k; i += 16)
        {
            var x0 = Vector256.Load(x + i);
            var x1 = Vector256.Load(x + i + 8);
            long o = i * eb, p = o + 8 * eb;
            Ahead<T>(w3 + rowBytes + 4 * o, 64 * eb);
            a0 = Vector256.FusedMultiplyAdd(T.Load8(w0 + o, ref special), x0, a0);
            b0 = Vector256.FusedMultiplyAdd(T.Load8(w0 + p, ref special), x1, b0);
            a1 = Vector256.FusedMultiplyAdd(T.Load8(w1 + o, ref special), x0, a1);
            b1 = Vector256.FusedMultiplyAdd(T.Load8(w1 + p, ref special), x1, b1);
            a2 = Vector256.FusedMultiplyAdd(T.Load8(w2 + o, ref special), x0, a2);
            b2 = Vector256.FusedMultiplyAdd(T.Load8(w2 + p, ref special), x1, b2);
            a3 = Vector256.FusedMultiplyAdd(T.Load8(w3 + o, ref special), x0, a3);
            b3 = Vector256.FusedMultiplyAdd(T.Load8(w3 + p, ref special), x1, b3);
        }
        if (i + 8 <= k)
        {
            var x0 = Vector256.Load(x + i);
            long o = i * eb;
            a0 = Vector256.FusedMultiplyAdd(T.Load8(w0 + o, ref special), x0, a0);
            a1 = Vector256.FusedMultiplyAdd(T.Load8(w1 + o, ref special), x0, a1);
            a2 = Vector256.FusedMultiplyAdd(T.Load8(w2 + o, ref special), x0, a2);
            a3 = Vector256.FusedMultiplyAdd(T.Load8(w3 + o, ref special), x0, a3);
            i += 8;
        }
        float t0 = 0, t1 = 0, t2 = 0, t3 = 0;
        int scalarSpecial = 0;
        for (; i < k; i++)
        {
            float xi = x[i];
            long o = i * eb;
            t0 += T.LoadOne(w0 + o, ref scalarSpecial) * xi;
            t1 += T.LoadOne(w1 + o, ref scalarSpecial) * xi;
            t2 += T.LoadOne(w2 + o, ref scalarSpecial) * xi;
            t3 += T.LoadOne(w3 + o, ref scalarSpecial) * xi;
        }
        y[0] = Vector256.Sum(a0 + b0) + t0;
        y[1] = Vector256.Sum(a1 + b1) + t1;
        y[2] = Vector256.Sum(a2 + b2) + t2;
        y[3] = Vector256.Sum(a3 + b3) + t3;
        return T.IsSpecial(special) || T.IsSpecial(scalarSpecial);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot1x256<T>(byte* w, long k, float* x, out bool isSpecial) where T : struct, IWeightFormat
    {
        long eb = T.ElementBytes;
        var special = Vector256<int>.Zero;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        long i = 0;
        if (T.Interleaves)
        {
            var raw = Vector256<ushort>.Zero;
            for (; i + 32 <= k; i += 32)
            {
                Ahead<T>(w + (k + i) * eb, 32 * eb);
                T.Load16Interleaved(w + i * eb, out var l0, out var h0, ref raw);
                T.Load16Interleaved(w + (i + 16) * eb, out var l1, out var h1, ref raw);
                a0 = Vector256.FusedMultiplyAdd(l0, Vector256.Load(x + i), a0);
                a1 = Vector256.FusedMultiplyAdd(h0, Vector256.Load(x + i + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(l1, Vector256.Load(x + i + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(h1, Vector256.Load(x + i + 24), a3);
            }
            if (i + 16 <= k)
            {
                T.Load16Interleaved(w + i * eb, out var l0, out var h0, ref raw);
                a0 = Vector256.FusedMultiplyAdd(l0, Vector256.Load(x + i), a0);
                a1 = Vector256.FusedMultiplyAdd(h0, Vector256.Load(x + i + 8), a1);
                i += 16;
            }
            if (T.IsSpecial(raw)) special = Vector256.Create(int.MaxValue);
        }
        for (; i + 32 <= k; i += 32)
        {
            long o = i * eb;
            Ahead<T>(w + k * eb + o, 32 * eb);
            a0 = Vector256.FusedMultiplyAdd(T.Load8(w + o, ref special), Vector256.Load(x + i), a0);
            a1 = Vector256.FusedMultiplyAdd(T.Load8(w + o + 8 * eb, ref special), Vector256.Load(x + i + 8), a1);
            a2 = Vector256.FusedMultiplyAdd(T.Load8(w + o + 16 * eb, ref special), Vector256.Load(x + i + 16), a2);
            a3 = Vector256.FusedMultiplyAdd(T.Load8(w + o + 24 * eb, ref special), Vector256.Load(x + i + 24), a3);
        }
        for (; i + 8 <= k; i += 8)
            a0 = Vector256.FusedMultiplyAdd(T.Load8(w + i * eb, ref special), Vector256.Load(x + i), a0);
        float tail = 0;
        int scalarSpecial = 0;
        for (; i < k; i++) tail += T.LoadOne(w + i * eb, ref scalarSpecial) * x[i];
        isSpecial = T.IsSpecial(special) || T.IsSpecial(scalarSpecial);
        return Vector256.Sum((a0 + a1) + (a2 + a3)) + tail;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool Dot4x512<T>(byte* w0, long rowBytes, long k, float* x, float* y) where T : struct, IWeightFormat
    {
        byte* w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes;
        long eb = T.ElementBytes;
        var special = Vector512<int>.Zero;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
        long i = 0;
        for (; i + 32 <= k; i += 32)
        {
            var x0 = Vector512.Load(x + i);
            var x1 = Vector512.Load(x + i + 16);
            long o = i * eb, p = o + 16 * eb;
            Ahead<T>(w3 + rowBytes + 4 * o, 128 * eb);
            a0 = Vector512.FusedMultiplyAdd(T.Load16(w0 + o, ref special), x0, a0);
            b0 = Vector512.FusedMultiplyAdd(T.Load16(w0 + p, ref special), x1, b0);
            a1 = Vector512.FusedMultiplyAdd(T.Load16(w1 + o, ref special), x0, a1);
            b1 = Vector512.FusedMultiplyAdd(T.Load16(w1 + p, ref special), x1, b1);
            a2 = Vector512.FusedMultiplyAdd(T.Load16(w2 + o, ref special), x0, a2);
            b2 = Vector512.FusedMultiplyAdd(T.Load16(w2 + p, ref special), x1, b2);
            a3 = Vector512.FusedMultiplyAdd(T.Load16(w3 + o, ref special), x0, a3);
            b3 = Vector512.FusedMultiplyAdd(T.Load16(w3 + p, ref special), x1, b3);
        }
        if (i + 16 <= k)
        {
            var x0 = Vector512.Load(x + i);
            long o = i * eb;
            a0 = Vector512.FusedMultiplyAdd(T.Load16(w0 + o, ref special), x0, a0);
            a1 = Vector512.FusedMultiplyAdd(T.Load16(w1 + o, ref special), x0, a1);
            a2 = Vector512.FusedMultiplyAdd(T.Load16(w2 + o, ref special), x0, a2);
            a3 = Vector512.FusedMultiplyAdd(T.Load16(w3 + o, ref special), x0, a3);
            i += 16;
        }
        float t0 = 0, t1 = 0, t2 = 0, t3 = 0;
        int scalarSpecial = 0;
        for (; i < k; i++)
        {
            float xi = x[i];
            long o = i * eb;
            t0 += T.LoadOne(w0 + o, ref scalarSpecial) * xi;
            t1 += T.LoadOne(w1 + o, ref scalarSpecial) * xi;
            t2 += T.LoadOne(w2 + o, ref scalarSpecial) * xi;
            t3 += T.LoadOne(w3 + o, ref scalarSpecial) * xi;
        }
        y[0] = Vector512.Sum(a0 + b0) + t0;
        y[1] = Vector512.Sum(a1 + b1) + t1;
        y[2] = Vector512.Sum(a2 + b2) + t2;
        y[3] = Vector512.Sum(a3 + b3) + t3;
        return T.IsSpecial(special) || T.IsSpecial(scalarSpecial);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot1x512<T>(byte* w, long k, float* x, out bool isSpecial) where T : struct, IWeightFormat
    {
        long eb = T.ElementBytes;
        var special = Vector512<int>.Zero;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        long i = 0;
        for (; i + 64 <= k; i += 64)
        {
            long o = i * eb;
            Ahead<T>(w + k * eb + o, 64 * eb);
            a0 = Vector512.FusedMultiplyAdd(T.Load16(w + o, ref special), Vector512.Load(x + i), a0);
            a1 = Vector512.FusedMultiplyAdd(T.Load16(w + o + 16 * eb, ref special), Vector512.Load(x + i + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(T.Load16(w + o + 32 * eb, ref special), Vector512.Load(x + i + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(T.Load16(w + o + 48 * eb, ref special), Vector512.Load(x + i + 48), a3);
        }
        for (; i + 16 <= k; i += 16)
            a0 = Vector512.FusedMultiplyAdd(T.Load16(w + i * eb, ref special), Vector512.Load(x + i), a0);
        float tail = 0;
        int scalarSpecial = 0;
        for (; i < k; i++) tail += T.LoadOne(w + i * eb, ref scalarSpecial) * x[i];
        isSpecial = T.IsSpecial(special) || T.IsSpecial(scalarSpecial);
        return Vector512.Sum((a0 + a1) + (a2 + a3)) + tail;
    }
}
