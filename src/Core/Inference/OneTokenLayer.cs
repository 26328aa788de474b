using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// One Llama decoder layer for one token on the CPU, top to bottom over plain float32 buffers:
///
///   h = RMSNorm(x) → q, k, v (kernel) → rotate q, k → append k, v to the cache → attention over the cache → o (kernel)
///   x += o ; h = RMSNorm(x) → gate, up (kernel) → silu(gate)·up → down (kernel) ; x += down
///
/// With the native kernel computing the linear layers, what is left of a one-token step is arithmetic on a few
/// thousand numbers, and done as tensors it is libtorch's per-call cost instead: about 40 operations and their
/// temporaries per layer, 4–7 ms per token on the 18-layer benchmark model against 50 ms of weight streaming.
/// Here the token's activations live in buffers this class owns; the only tensor calls left per layer are reading
/// the weights' addresses and making the output. The arithmetic follows transformers' Llama: the same norm, the
/// same rotate_half rotation, softmax(q·kᵀ/√d)·v per query head over its shared key/value head. For float16 and
/// bfloat16 models every value is rounded to the model's type wherever the tensor path stores a tensor of it (after
/// each projection, product, sum and norm step; attention computes in float32 as it does there), so both paths
/// compute the same numbers.
/// <para>
/// Its loops, and the conversions and attention it calls, are compiled fully optimised from the first call
/// (<c>AggressiveOptimization</c>): tiered compilation would run them unoptimised through a session's first tokens.
/// While it computes between projections, the other cores read the next projection's weights into the caches
/// (<see cref="DecodeKernel.Warm"/>), and between layers the next layer's q, k and v when they are persistent.
/// </para>
/// </summary>
internal sealed unsafe class OneTokenLayer : IDisposable
{
    private readonly DecodeKernel _kernel;
    private readonly int _hidden, _heads, _kvHeads, _headDim, _intermediate;
    private readonly double _eps;
    private float* _memory;
    private readonly float* _x, _h, _norm, _q, _k, _v, _attended, _out, _gate, _up, _first, _second, _cos, _sin;
    private readonly CachedAttention _attention;
    private ScalarType _type;
    private readonly long[] _shape;
    private readonly Dictionary<int, Tensor> _accepted = new();   // per layer: a weight of the block last found acceptable
    private readonly Dictionary<int, Tensor[]> _firstProjections = new();   // per persistent layer: q, k and v, warmed by the layer before

    public OneTokenLayer(DecodeKernel kernel, int hidden, int heads, int kvHeads, int headDim, int intermediate, double eps)
    {
        _kernel = kernel;
        (_hidden, _heads, _kvHeads, _headDim, _intermediate, _eps) = (hidden, heads, kvHeads, headDim, intermediate, eps);
        int q = heads * headDim, kv = kvHeads * headDim;
        long[] sizes = [hidden, hidden, hidden, q, kv, kv, q, hidden, intermediate, intermediate, q, q, headDim, headDim];
        _memory = (float*)NativeMemory.AlignedAlloc((nuint)(sizes.Sum() * sizeof(float)), 64);
        float* at = _memory;
        float* Next(long count) { var p = at; at += count; return p; }
        _x = Next(hidden); _h = Next(hidden); _norm = Next(hidden); _q = Next(q); _k = Next(kv); _v = Next(kv);
        _attended = Next(q); _out = Next(hidden); _gate = Next(intermediate); _up = Next(intermediate);
        _first = Next(q); _second = Next(q); _cos = Next(headDim); _sin = Next(headDim);
        _shape = [1, 1, hidden];
        _attention = new CachedAttention(heads, kvHeads, headDim, kernel.Threads, kernel.RunParallel);
    }

    /// <summary>
    /// Whether this path runs layer <paramref name="layer"/>: one float32, float16 or bfloat16 CPU token, and every
    /// weight one the kernel takes in that type (a block streamed in another type, or to another device, goes the
    /// tensor way).
    /// </summary>
    public bool Accepts(int layer, Tensor x, BlockWeights w)
    {
        var type = x.dtype;
        if (type is not (ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16)) return false;
        if (x.device_type != TorchSharp.DeviceType.CPU || x.numel() != _hidden || !x.is_contiguous()) return false;
        // Resident blocks hand out the same weight tensors every step: checked once (the type is checked above).
        var probe = w["self_attn.q_proj.weight"];
        if (_accepted.TryGetValue(layer, out var seen) && ReferenceEquals(seen, probe) && probe.dtype == type) return true;
        if (!AcceptsWeights(w, type)) return false;
        _accepted[layer] = probe;
        return true;
    }

    private bool AcceptsWeights(BlockWeights w, ScalarType type)
    {
        foreach (var norm in new[] { "input_layernorm.weight", "post_attention_layernorm.weight" })
        {
            var t = w[norm];
            if (t.device_type != TorchSharp.DeviceType.CPU || t.dtype != type || t.numel() != _hidden || !t.is_contiguous()) return false;
        }
        return Takes(w, "self_attn.q_proj", _hidden, type) && Takes(w, "self_attn.k_proj", _hidden, type) && Takes(w, "self_attn.v_proj", _hidden, type)
            && Takes(w, "self_attn.o_proj", _heads * _headDim, type) && Takes(w, "mlp.gate_proj", _hidden, type) && Takes(w, "mlp.up_proj", _hidden, type)
            && Takes(w, "mlp.down_proj", _intermediate, type);
    }

    private static bool Takes(BlockWeights w, string name, long columns, ScalarType type) =>
        DecodeKernel.AcceptsWeight(w[name + ".weight"], w.Optional(name + ".bias"), columns, type);

    /// <summary>
    /// Runs the layer for the token <paramref name="x"/> (<c>[1, 1, hidden]</c>) at <paramref name="position"/>,
    /// storing its key and value in <paramref name="cache"/>; returns the new hidden state (a new tensor of x's type).
    /// </summary>
    /// <param name="layer">The layer's index (its cache slot).</param>
    /// <param name="w">The layer's weights (<see cref="Accepts"/> said yes to them).</param>
    /// <param name="x">The token's hidden state.</param>
    /// <param name="cache">The sequence's key/value cache.</param>
    /// <param name="position">The token's position.</param>
    /// <param name="cos">cos of the position's rotary angles (headDim values of x's type).</param>
    /// <param name="sin">sin of the position's rotary angles (headDim values of x's type).</param>
    /// <param name="window">Latest positions each query sees (sliding window), or null for all.</param>
    public Tensor Run(int layer, BlockWeights w, Tensor x, KvCache cache, int position, byte* cos, byte* sin, int? window)
    {
        ObjectDisposedException.ThrowIf(_memory == null, this);
        _type = x.dtype;
        ToFloat((byte*)TorchTypes.DataPointer(x), _x, _hidden);
        ToFloat(cos, _cos, _headDim);
        ToFloat(sin, _sin, _headDim);

        // Attention.
        RmsNorm(w["input_layernorm.weight"]);
        _kernel.Linear([Projection(w, "self_attn.q_proj", _q), Projection(w, "self_attn.k_proj", _k), Projection(w, "self_attn.v_proj", _v)], _h, _hidden);
        _kernel.Warm([w["self_attn.o_proj.weight"]]);
        Round(_q, _heads * _headDim);
        Round(_k, _kvHeads * _headDim);
        Round(_v, _kvHeads * _headDim);
        Rotate(_q, _heads);
        Rotate(_k, _kvHeads);
        cache.Slots(layer, _kvHeads, _headDim, position, _type, out byte* keys, out byte* values);
        int capacity = cache.Capacity, size = ElementSize;
        for (int g = 0; g < _kvHeads; g++)
        {
            long at = ((long)g * capacity + position) * _headDim * size;
            FromFloat(_k + g * _headDim, keys + at, _headDim);
            FromFloat(_v + g * _headDim, values + at, _headDim);
        }
        int first = window is int span && position + 1 > span ? position + 1 - span : 0;
        bool finite = _type == ScalarType.Float16 && cache.HalfRowsFinite(layer, _kvHeads, _headDim, position, keys, values);
        _attention.Run(_type, _q, keys, values, capacity, first, position, _attended, finite);
        Round(_attended, _heads * _headDim);
        Linear(w, "self_attn.o_proj", _attended, _heads * _headDim, _out, _hidden);
        _kernel.Warm([w["mlp.gate_proj.weight"], w["mlp.up_proj.weight"]]);
        AddInto(_x, _out, _hidden);

        // SwiGLU MLP.
        RmsNorm(w["post_attention_layernorm.weight"]);
        _kernel.Linear([Projection(w, "mlp.gate_proj", _gate), Projection(w, "mlp.up_proj", _up)], _h, _hidden);
        _kernel.Warm([w["mlp.down_proj.weight"]]);
        Round(_gate, _intermediate);
        Round(_up, _intermediate);
        Silu(_gate, _intermediate);
        Round(_gate, _intermediate);
        Multiply(_gate, _up, _intermediate);
        Linear(w, "mlp.down_proj", _gate, _intermediate, _out, _hidden);
        WarmNextLayer(layer, w);
        AddInto(_x, _out, _hidden);

        var result = empty(_shape, _type);
        FromFloat(_x, (byte*)TorchTypes.DataPointer(result), _hidden);
        return result;
    }

    /// <summary>
    /// Between layers the engine hands over the hidden state and the next block, and the next layer norms it: the
    /// longest stretch without a kernel call in a step. When the next layer's weights are persistent (this path saw
    /// them on an earlier token), the other cores read its q, k and v in the meantime.
    /// </summary>
    private void WarmNextLayer(int layer, BlockWeights w)
    {
        if (w.Persistent && !_firstProjections.ContainsKey(layer))
            _firstProjections[layer] = [w["self_attn.q_proj.weight"], w["self_attn.k_proj.weight"], w["self_attn.v_proj.weight"]];
        if (_firstProjections.TryGetValue(layer + 1, out var next) && _kernel.Warm(next)) NextLayerWarms++;
    }

    /// <summary>Times a layer had the next layer's q, k and v warmed (see <see cref="WarmNextLayer"/>).</summary>
    public long NextLayerWarms { get; private set; }

    private int ElementSize => _type == ScalarType.Float32 ? 4 : 2;

    /// <summary>A projection through the kernel, its outputs rounded to the model's type.</summary>
    private void Linear(BlockWeights w, string name, float* x, long columns, float* y, int rows)
    {
        _kernel.Linear([Projection(w, name, y)], x, columns);
        Round(y, rows);
    }

    private static DecodeKernel.Projection Projection(BlockWeights w, string name, float* output) =>
        new(w[name + ".weight"], w.Optional(name + ".bias"), output);

    /// <summary>transformers' RMSNorm of the residual into <c>_h</c>: weight · (x · rsqrt(mean(x²) + eps)), in float32, rounded to the model's type before the weight multiplies it.</summary>
    private void RmsNorm(Tensor weight)
    {
        // A float32 weight is read where it lives; a 16-bit one is widened first.
        byte* stored = (byte*)TorchTypes.DataPointer(weight);
        float* scale = _type == ScalarType.Float32 ? (float*)stored : _norm;
        if (scale == _norm) ToFloat(stored, _norm, _hidden);
        float inverse = OneTokenOps.InverseRms(_x, _hidden, _eps);
        for (int i = 0; i < _hidden; i++) _h[i] = _x[i] * inverse;
        Round(_h, _hidden);
        Multiply(_h, scale, _hidden);
    }

    /// <summary>q·cos + rotate_half(q)·sin per head, where rotate_half maps the halves (x1, x2) to (−x2, x1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Rotate(float* x, int heads)
    {
        int half = _headDim / 2;
        for (int h = 0; h < heads; h++)
        {
            float* row = x + h * _headDim, a = _first + h * _headDim, b = _second + h * _headDim;
            int i = 0;
            for (; i + 8 <= half; i += 8)
            {
                var low = Vector256.Load(row + i);
                var high = Vector256.Load(row + i + half);
                (low * Vector256.Load(_cos + i)).Store(a + i);
                (-high * Vector256.Load(_sin + i)).Store(b + i);
                (high * Vector256.Load(_cos + i + half)).Store(a + i + half);
                (low * Vector256.Load(_sin + i + half)).Store(b + i + half);
            }
            for (; i < half; i++)
            {
                a[i] = row[i] * _cos[i];
                b[i] = -row[i + half] * _sin[i];
                a[i + half] = row[i + half] * _cos[i + half];
                b[i + half] = row[i] * _sin[i + half];
            }
        }
        int n = heads * _headDim;
        Round(_first, n);
        Round(_second, n);
        for (int i = 0; i < n; i++) x[i] = _first[i] + _second[i];
        Round(x, n);
    }

    // ---------------------------------------------------------------- the model's type

    private void Round(float* values, long count)
    {
        if (_type == ScalarType.Float16) InputConversion.RoundToHalf(values, count);
        else if (_type == ScalarType.BFloat16) InputConversion.RoundToBF16(values, count);
    }

    private void ToFloat(byte* source, float* destination, long count)
    {
        if (_type == ScalarType.Float16) InputConversion.HalfToScaledSingle((ushort*)source, destination, count, 1f);
        else if (_type == ScalarType.BFloat16) InputConversion.BF16ToSingle((ushort*)source, destination, count);
        else new ReadOnlySpan<float>(source, checked((int)count)).CopyTo(new Span<float>(destination, checked((int)count)));
    }

    /// <summary>Stores values already of the model's type (so the conversion is exact).</summary>
    private void FromFloat(float* source, byte* destination, long count)
    {
        if (_type == ScalarType.Float16) InputConversion.HalfValuesToHalf(source, (ushort*)destination, count);
        else if (_type == ScalarType.BFloat16)
            for (long i = 0; i < count; i++) ((ushort*)destination)[i] = InputConversion.SingleToBF16(source[i]);
        else new ReadOnlySpan<float>(source, checked((int)count)).CopyTo(new Span<float>(destination, checked((int)count)));
    }

    /// <summary>x += y, rounded to the model's type.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AddInto(float* x, float* y, int n)
    {
        int i = 0;
        for (; i + 8 <= n; i += 8) (Vector256.Load(x + i) + Vector256.Load(y + i)).Store(x + i);
        for (; i < n; i++) x[i] += y[i];
        Round(x, n);
    }

    /// <summary>x *= y, rounded to the model's type.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Multiply(float* x, float* y, int n)
    {
        int i = 0;
        for (; i + 8 <= n; i += 8) (Vector256.Load(x + i) * Vector256.Load(y + i)).Store(x + i);
        for (; i < n; i++) x[i] *= y[i];
        Round(x, n);
    }

    /// <summary>silu(g) = g / (1 + e⁻ᵍ), in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Silu(float* g, int n)
    {
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var v = Vector256.Load(g + i);
            (v / (Vector256<float>.One + Vector256.Exp(-v))).Store(g + i);
        }
        for (; i < n; i++) g[i] /= 1f + MathF.Exp(-g[i]);
    }

    public void Dispose()
    {
        _accepted.Clear();
        _firstProjections.Clear();
        NativeMemory.AlignedFree(_memory);
        _memory = null;
        _attention.Dispose();
    }
}
