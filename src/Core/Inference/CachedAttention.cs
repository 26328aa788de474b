using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TorchSharp;

namespace BigModel.Inference;

/// <summary>
/// One token's attention over a layer's key/value cache, in float32 as the tensor path computes it:
/// softmax(q·kᵀ / √headDim)·v for each query head over the cached positions of its key/value head (query heads are
/// grouped in order onto the key/value heads).
/// <para>
/// The cache is read where it lies, in the model's type. 16-bit keys and values are widened in registers the way the
/// decode kernel widens weights (<see cref="IWeightFormat"/>): the query is multiplied by the format's input scale
/// and each sum divided by it, powers of two that leave every product and sum what it would be on float32 copies.
/// Converting the whole window to float32 first cost, per token, as much as the rest of a layer's arithmetic. A
/// float16 window holding an infinity or NaN (a float16 cache can overflow), which that widening gets wrong, is
/// converted exactly instead; a window without one is read without watching for them.
/// </para>
/// </summary>
internal sealed unsafe class CachedAttention : IDisposable
{
    private readonly int _heads, _kvHeads, _headDim;
    private float* _scratch;        // scores, the scaled query, then (float16 windows with an infinity or NaN) float32 copies
    private long _capacity;

    public CachedAttention(int heads, int kvHeads, int headDim)
    {
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || headDim <= 0)
            throw new ArgumentException($"{heads} query heads cannot share {kvHeads} key/value heads of {headDim} values.");
        (_heads, _kvHeads, _headDim) = (heads, kvHeads, headDim);
    }

    /// <summary>
    /// Attends the queries (<c>heads × headDim</c> float32 values) over positions <paramref name="first"/>..<paramref name="last"/>
    /// of caches laid out <c>[kvHeads, capacity, headDim]</c> in <paramref name="type"/>, writing <c>heads × headDim</c> outputs.
    /// <paramref name="finite"/> says a float16 window is known to hold no infinity or NaN (<see cref="KvCache.HalfRowsFinite"/>);
    /// otherwise each head's window is looked at first.
    /// </summary>
    public void Run(torch.ScalarType type, float* queries, byte* keys, byte* values, int capacity, int first, int last, float* output, bool finite = false)
    {
        ObjectDisposedException.ThrowIf(_capacity < 0, this);
        switch (type)
        {
            case torch.ScalarType.Float32: Run<F32Weights>(queries, keys, values, capacity, first, last, output, false); break;
            case torch.ScalarType.Float16: Run<F16Weights>(queries, keys, values, capacity, first, last, output, finite); break;
            case torch.ScalarType.BFloat16: Run<BF16Weights>(queries, keys, values, capacity, first, last, output, false); break;
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "caches are float32, float16 or bfloat16.");
        }
    }

    private void Run<T>(float* queries, byte* keys, byte* values, int capacity, int first, int last, float* output, bool finite) where T : struct, IWeightFormat
    {
        int count = last - first + 1;
        long window = (long)count * _headDim, rowBytes = (long)_headDim * T.ElementBytes;
        EnsureScratch(count + _headDim + (typeof(T) == typeof(F16Weights) && !finite ? 2 * window : 0));
        for (int g = 0; g < _kvHeads; g++)
        {
            byte* k = keys + ((long)g * capacity + first) * rowBytes, v = values + ((long)g * capacity + first) * rowBytes;
            if (typeof(T) != typeof(F16Weights))
            {
                Group<T>(g, queries, k, v, count, output);
            }
            else if (finite)
            {
                Group<F16FiniteWeights>(g, queries, k, v, count, output);
            }
            else if (InputConversion.HasNonFiniteHalf((ushort*)k, window) || InputConversion.HasNonFiniteHalf((ushort*)v, window))
            {
                float* exactKeys = _scratch + count + _headDim, exactValues = exactKeys + window;
                InputConversion.HalfToScaledSingle((ushort*)k, exactKeys, window, 1f);
                InputConversion.HalfToScaledSingle((ushort*)v, exactValues, window, 1f);
                Group<F32Weights>(g, queries, (byte*)exactKeys, (byte*)exactValues, count, output);
            }
            else
            {
                Group<F16FiniteWeights>(g, queries, k, v, count, output);
            }
        }
    }

    /// <summary>The query heads of key/value head <paramref name="g"/> over <paramref name="count"/> cached rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Group<T>(int g, float* queries, byte* k, byte* v, int count, float* output) where T : struct, IWeightFormat
    {
        float* scores = _scratch, query = _scratch + count;
        int group = _heads / _kvHeads;
        long rowBytes = (long)_headDim * T.ElementBytes;
        float inputScale = T.InputScale, scale = 1f / MathF.Sqrt(_headDim);
        for (int head = g * group; head < (g + 1) * group; head++)
        {
            float* q = queries + head * _headDim;
            for (int i = 0; i < _headDim; i++) query[i] = q[i] * inputScale;
            float max = float.NegativeInfinity;
            for (int p = 0; p < count; p++)
            {
                float score = Dot<T>(query, k + p * rowBytes, _headDim) * inputScale * scale;
                scores[p] = score;
                max = MathF.Max(max, score);
            }
            float total = 0;
            for (int p = 0; p < count; p++)
            {
                float e = MathF.Exp(scores[p] - max);
                scores[p] = e;
                total += e;
            }
            float* attended = output + head * _headDim;
            new Span<float>(attended, _headDim).Clear();
            // Loaded values carry a factor of InputScale⁻², which each row's weight takes back.
            float inverse = 1f / total * inputScale * inputScale;
            for (int p = 0; p < count; p++) AddScaled<T>(attended, v + p * rowBytes, scores[p] * inverse, _headDim);
        }
    }

    /// <summary>Σ x[i]·row[i] over one cached row in <typeparamref name="T"/>'s scaled domain.</summary>
    private static float Dot<T>(float* x, byte* row, int n) where T : struct, IWeightFormat
    {
        int i = 0;
        var sum = Vector256<float>.Zero;
        var unwatched = Vector256<int>.Zero;
        int unwatchedOne = 0;
        for (; i + 8 <= n; i += 8) sum = Vector256.FusedMultiplyAdd(T.Load8(row + i * T.ElementBytes, ref unwatched), Vector256.Load(x + i), sum);
        float total = Vector256.Sum(sum);
        for (; i < n; i++) total += T.LoadOne(row + i * T.ElementBytes, ref unwatchedOne) * x[i];
        return total;
    }

    /// <summary>output[i] += factor·row[i] over one cached row in <typeparamref name="T"/>'s scaled domain.</summary>
    private static void AddScaled<T>(float* output, byte* row, float factor, int n) where T : struct, IWeightFormat
    {
        int i = 0;
        var f = Vector256.Create(factor);
        var unwatched = Vector256<int>.Zero;
        int unwatchedOne = 0;
        for (; i + 8 <= n; i += 8)
            Vector256.FusedMultiplyAdd(T.Load8(row + i * T.ElementBytes, ref unwatched), f, Vector256.Load(output + i)).Store(output + i);
        for (; i < n; i++) output[i] += T.LoadOne(row + i * T.ElementBytes, ref unwatchedOne) * factor;
    }

    private void EnsureScratch(long needed)
    {
        if (needed <= _capacity) return;
        NativeMemory.AlignedFree(_scratch);
        _scratch = null;
        _capacity = Math.Max(needed, 2 * _capacity);
        _scratch = (float*)NativeMemory.AlignedAlloc((nuint)(_capacity * sizeof(float)), 64);
    }

    public void Dispose()
    {
        NativeMemory.AlignedFree(_scratch);
        _scratch = null;
        _capacity = -1;
    }
}
