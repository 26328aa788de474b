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
    /// <summary>
    /// Cached keys and values (elements, all heads) from which the heads are spread over the cores: below it a
    /// dispatch costs more than it saves, and the cores keep warming the next weights instead.
    /// </summary>
    internal const long ParallelElements = 1 << 19;

    private readonly int _heads, _kvHeads, _headDim;
    private readonly Action<IParallelWork>? _parallel;
    private readonly float*[] _scratch;     // per participant: scores, the scaled query, then (float16 windows with an infinity or NaN) float32 copies
    private readonly long[] _capacity;
    private readonly HeadsWork _work;
    private bool _disposed;

    /// <param name="heads">Query heads.</param>
    /// <param name="kvHeads">Key/value heads (query heads are grouped in order onto them).</param>
    /// <param name="headDim">Values per head.</param>
    /// <param name="participants">Threads <paramref name="parallel"/> runs a job on (1: always on the caller).</param>
    /// <param name="parallel">Runs a job on all participants and returns when it is done (the decode kernel's workers).</param>
    public CachedAttention(int heads, int kvHeads, int headDim, int participants = 1, Action<IParallelWork>? parallel = null)
    {
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || headDim <= 0)
            throw new ArgumentException($"{heads} query heads cannot share {kvHeads} key/value heads of {headDim} values.");
        ArgumentOutOfRangeException.ThrowIfLessThan(participants, 1);
        (_heads, _kvHeads, _headDim) = (heads, kvHeads, headDim);
        _parallel = participants > 1 ? parallel : null;
        _scratch = new float*[participants];
        _capacity = new long[participants];
        _work = new HeadsWork(this);
    }

    /// <summary>
    /// Attends the queries (<c>heads × headDim</c> float32 values) over positions <paramref name="first"/>..<paramref name="last"/>
    /// of caches laid out <c>[kvHeads, capacity, headDim]</c> in <paramref name="type"/>, writing <c>heads × headDim</c> outputs.
    /// <paramref name="finite"/> says a float16 window is known to hold no infinity or NaN (<see cref="KvCache.HalfRowsFinite"/>);
    /// otherwise each head's window is looked at first.
    /// </summary>
    public void Run(torch.ScalarType type, float* queries, byte* keys, byte* values, int capacity, int first, int last, float* output, bool finite = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (type is not (torch.ScalarType.Float32 or torch.ScalarType.Float16 or torch.ScalarType.BFloat16))
            throw new ArgumentOutOfRangeException(nameof(type), type, "caches are float32, float16 or bfloat16.");
        _work.Begin(type, queries, keys, values, capacity, first, last, output, finite && type == torch.ScalarType.Float16);
        // Each key/value head is independent and written by one participant alone, so spreading them changes no result.
        if (_parallel is not null && _kvHeads > 1 && 2L * (last - first + 1) * _headDim * _kvHeads >= ParallelElements) _parallel(_work);
        else _work.Execute(0);
    }

    /// <summary>The key/value heads of one call, claimed one at a time by the participants.</summary>
    private sealed class HeadsWork(CachedAttention owner) : IParallelWork
    {
        private torch.ScalarType _type;
        private float* _queries, _output;
        private byte* _keys, _values;
        private int _capacity, _first, _last, _next;
        private bool _finite;

        public void Begin(torch.ScalarType type, float* queries, byte* keys, byte* values, int capacity, int first, int last, float* output, bool finite)
        {
            _type = type;
            _queries = queries;
            _keys = keys;
            _values = values;
            _output = output;
            (_capacity, _first, _last, _finite) = (capacity, first, last, finite);
            _next = 0;
        }

        public void Execute(int worker)
        {
            for (int g; (g = Interlocked.Increment(ref _next) - 1) < owner._kvHeads;)
            {
                switch (_type)
                {
                    case torch.ScalarType.Float32: owner.Head<F32Weights>(worker, g, _queries, _keys, _values, _capacity, _first, _last, _output, false); break;
                    case torch.ScalarType.Float16: owner.Head<F16Weights>(worker, g, _queries, _keys, _values, _capacity, _first, _last, _output, _finite); break;
                    default: owner.Head<BF16Weights>(worker, g, _queries, _keys, _values, _capacity, _first, _last, _output, false); break;
                }
            }
        }
    }

    /// <summary>Key/value head <paramref name="g"/> and its query heads, with participant <paramref name="worker"/>'s scratch.</summary>
    private void Head<T>(int worker, int g, float* queries, byte* keys, byte* values, int capacity, int first, int last, float* output, bool finite)
        where T : struct, IWeightFormat
    {
        int count = last - first + 1;
        long window = (long)count * _headDim, rowBytes = (long)_headDim * T.ElementBytes;
        float* scratch = Scratch(worker, count + _headDim + (typeof(T) == typeof(F16Weights) && !finite ? 2 * window : 0));
        byte* k = keys + ((long)g * capacity + first) * rowBytes, v = values + ((long)g * capacity + first) * rowBytes;
        if (typeof(T) != typeof(F16Weights))
        {
            Group<T>(g, scratch, queries, k, v, count, output);
        }
        else if (!finite && (InputConversion.HasNonFiniteHalf((ushort*)k, window) || InputConversion.HasNonFiniteHalf((ushort*)v, window)))
        {
            float* exactKeys = scratch + count + _headDim, exactValues = exactKeys + window;
            InputConversion.HalfToScaledSingle((ushort*)k, exactKeys, window, 1f);
            InputConversion.HalfToScaledSingle((ushort*)v, exactValues, window, 1f);
            Group<F32Weights>(g, scratch, queries, (byte*)exactKeys, (byte*)exactValues, count, output);
        }
        else
        {
            Group<F16FiniteWeights>(g, scratch, queries, k, v, count, output);
        }
    }

    /// <summary>The query heads of key/value head <paramref name="g"/> over <paramref name="count"/> cached rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Group<T>(int g, float* scratch, float* queries, byte* k, byte* v, int count, float* output) where T : struct, IWeightFormat
    {
        float* scores = scratch, query = scratch + count;
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

    private float* Scratch(int worker, long needed)
    {
        if (needed > _capacity[worker])
        {
            NativeMemory.AlignedFree(_scratch[worker]);
            _scratch[worker] = null;
            _capacity[worker] = Math.Max(needed, 2 * _capacity[worker]);
            _scratch[worker] = (float*)NativeMemory.AlignedAlloc((nuint)(_capacity[worker] * sizeof(float)), 64);
        }
        return _scratch[worker];
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        for (int i = 0; i < _scratch.Length; i++)
        {
            NativeMemory.AlignedFree(_scratch[i]);
            _scratch[i] = null;
        }
    }
}
