using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// One Llama decoder layer for one float32 token on the CPU, top to bottom over plain buffers:
///
///   h = RMSNorm(x) → q, k, v (kernel) → rotate q, k → append k, v to the cache → attention over the cache → o (kernel)
///   x += o ; h = RMSNorm(x) → gate, up (kernel) → silu(gate)·up → down (kernel) ; x += down
///
/// With the native kernel computing the linear layers, what is left of a one-token step is arithmetic on a few
/// thousand numbers, and done as tensors it is libtorch's per-call cost instead: about 40 operations and their
/// temporaries per layer, 4–7 ms per token on the 18-layer benchmark model against 50 ms of weight streaming.
/// Here the token's activations live in buffers this class owns; the only tensor calls left per layer are reading
/// the weights' addresses and making the output. The arithmetic follows transformers' float32 Llama: the same
/// norm, the same rotate_half rotation, softmax(q·kᵀ/√d)·v per query head over its shared key/value head.
/// </summary>
internal sealed unsafe class OneTokenLayer : IDisposable
{
    private readonly DecodeKernel _kernel;
    private readonly int _hidden, _heads, _kvHeads, _headDim, _intermediate;
    private readonly float _eps;
    private float* _memory;
    private readonly float* _h, _q, _k, _v, _attended, _out, _gate, _up;
    private float* _scores;
    private int _scoreCapacity;

    public OneTokenLayer(DecodeKernel kernel, int hidden, int heads, int kvHeads, int headDim, int intermediate, double eps)
    {
        _kernel = kernel;
        (_hidden, _heads, _kvHeads, _headDim, _intermediate, _eps) = (hidden, heads, kvHeads, headDim, intermediate, (float)eps);
        long[] sizes = [hidden, heads * headDim, kvHeads * headDim, kvHeads * headDim, heads * headDim, hidden, intermediate, intermediate];
        _memory = (float*)NativeMemory.AlignedAlloc((nuint)(sizes.Sum() * sizeof(float)), 64);
        float* at = _memory;
        float* Next(long count) { var p = at; at += count; return p; }
        _h = Next(sizes[0]); _q = Next(sizes[1]); _k = Next(sizes[2]); _v = Next(sizes[3]);
        _attended = Next(sizes[4]); _out = Next(sizes[5]); _gate = Next(sizes[6]); _up = Next(sizes[7]);
    }

    /// <summary>
    /// Whether this path runs the layer: one float32 CPU token, and every weight one the kernel takes (float32 on the
    /// CPU; a block streamed in another type, or to another device, goes the tensor way).
    /// </summary>
    public bool Accepts(Tensor x, BlockWeights w)
    {
        if (x.device_type != TorchSharp.DeviceType.CPU || x.dtype != ScalarType.Float32 || x.numel() != _hidden || !x.is_contiguous()) return false;
        foreach (var norm in new[] { "input_layernorm.weight", "post_attention_layernorm.weight" })
        {
            var t = w[norm];
            if (t.device_type != TorchSharp.DeviceType.CPU || t.dtype != ScalarType.Float32 || t.numel() != _hidden || !t.is_contiguous()) return false;
        }
        return Takes(w, "self_attn.q_proj", _hidden) && Takes(w, "self_attn.k_proj", _hidden) && Takes(w, "self_attn.v_proj", _hidden)
            && Takes(w, "self_attn.o_proj", _heads * _headDim) && Takes(w, "mlp.gate_proj", _hidden) && Takes(w, "mlp.up_proj", _hidden)
            && Takes(w, "mlp.down_proj", _intermediate);
    }

    private static bool Takes(BlockWeights w, string name, long columns) =>
        DecodeKernel.AcceptsFloat32(w[name + ".weight"], w.Optional(name + ".bias"), columns);

    /// <summary>
    /// Runs the layer for the token <paramref name="x"/> (<c>[1, 1, hidden]</c>) at <paramref name="position"/>,
    /// storing its key and value in <paramref name="cache"/>; returns the new hidden state (a new tensor).
    /// </summary>
    /// <param name="layer">The layer's index (its cache slot).</param>
    /// <param name="w">The layer's weights (<see cref="Accepts"/> said yes to them).</param>
    /// <param name="x">The token's hidden state.</param>
    /// <param name="cache">The sequence's key/value cache.</param>
    /// <param name="position">The token's position.</param>
    /// <param name="cos">cos of the position's rotary angles (headDim floats).</param>
    /// <param name="sin">sin of the position's rotary angles.</param>
    /// <param name="window">Latest positions each query sees (sliding window), or null for all.</param>
    public Tensor Run(int layer, BlockWeights w, Tensor x, KvCache cache, int position, float* cos, float* sin, int? window)
    {
        ObjectDisposedException.ThrowIf(_memory == null, this);
        var result = x.clone();
        float* residual = (float*)TorchTypes.DataPointer(result);

        // Attention.
        RmsNorm(residual, (float*)TorchTypes.DataPointer(w["input_layernorm.weight"]), _h);
        Linear(w, "self_attn.q_proj", _h, _hidden, _q);
        Linear(w, "self_attn.k_proj", _h, _hidden, _k);
        Linear(w, "self_attn.v_proj", _h, _hidden, _v);
        Rotate(_q, _heads, cos, sin);
        Rotate(_k, _kvHeads, cos, sin);
        cache.Float32Slots(layer, _kvHeads, _headDim, position, out float* keys, out float* values);
        int capacity = cache.Capacity;
        for (int g = 0; g < _kvHeads; g++)
        {
            new ReadOnlySpan<float>(_k + g * _headDim, _headDim).CopyTo(new Span<float>(keys + ((long)g * capacity + position) * _headDim, _headDim));
            new ReadOnlySpan<float>(_v + g * _headDim, _headDim).CopyTo(new Span<float>(values + ((long)g * capacity + position) * _headDim, _headDim));
        }
        int first = window is int size && position + 1 > size ? position + 1 - size : 0;
        Attend(keys, values, capacity, first, position);
        Linear(w, "self_attn.o_proj", _attended, _heads * _headDim, _out);
        Add(residual, _out, _hidden);

        // SwiGLU MLP.
        RmsNorm(residual, (float*)TorchTypes.DataPointer(w["post_attention_layernorm.weight"]), _h);
        Linear(w, "mlp.gate_proj", _h, _hidden, _gate);
        Linear(w, "mlp.up_proj", _h, _hidden, _up);
        for (int i = 0; i < _intermediate; i++)
        {
            float g = _gate[i];
            _gate[i] = g / (1f + MathF.Exp(-g)) * _up[i];
        }
        Linear(w, "mlp.down_proj", _gate, _intermediate, _out);
        Add(residual, _out, _hidden);
        return result;
    }

    private void Linear(BlockWeights w, string name, float* x, long columns, float* y) =>
        _kernel.Linear(w[name + ".weight"], w.Optional(name + ".bias"), x, columns, y);

    /// <summary>transformers' RMSNorm in float32: weight · (x · rsqrt(mean(x²) + eps)).</summary>
    private void RmsNorm(float* x, float* weight, float* output)
    {
        float sum = 0;
        for (int i = 0; i < _hidden; i++) sum += x[i] * x[i];
        float inverse = 1f / MathF.Sqrt(sum / _hidden + _eps);
        for (int i = 0; i < _hidden; i++) output[i] = weight[i] * (x[i] * inverse);
    }

    /// <summary>Per head, (x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin) over the two halves: q·cos + rotate_half(q)·sin.</summary>
    private void Rotate(float* x, int heads, float* cos, float* sin)
    {
        int half = _headDim / 2;
        for (int h = 0; h < heads; h++, x += _headDim)
        {
            for (int i = 0; i < half; i++)
            {
                float x1 = x[i], x2 = x[i + half];
                x[i] = x1 * cos[i] + -x2 * sin[i];
                x[i + half] = x2 * cos[i + half] + x1 * sin[i + half];
            }
        }
    }

    /// <summary>
    /// softmax(q·kᵀ / √headDim)·v for each query head over cached positions <paramref name="first"/>..<paramref name="last"/>
    /// of its key/value head (query heads are grouped in order onto the key/value heads).
    /// </summary>
    private void Attend(float* keys, float* values, int capacity, int first, int last)
    {
        int count = last - first + 1;
        if (count > _scoreCapacity)
        {
            NativeMemory.AlignedFree(_scores);
            _scoreCapacity = Math.Max(count, 2 * _scoreCapacity);
            _scores = (float*)NativeMemory.AlignedAlloc((nuint)(_scoreCapacity * sizeof(float)), 64);
        }
        int group = _heads / _kvHeads;
        float scale = 1f / MathF.Sqrt(_headDim);
        for (int head = 0; head < _heads; head++)
        {
            int g = head / group;
            float* q = _q + head * _headDim;
            float* k = keys + ((long)g * capacity + first) * _headDim;
            float* v = values + ((long)g * capacity + first) * _headDim;
            float max = float.NegativeInfinity;
            for (int p = 0; p < count; p++)
            {
                float score = Dot(q, k + (long)p * _headDim, _headDim) * scale;
                _scores[p] = score;
                max = MathF.Max(max, score);
            }
            float total = 0;
            for (int p = 0; p < count; p++)
            {
                float e = MathF.Exp(_scores[p] - max);
                _scores[p] = e;
                total += e;
            }
            float* output = _attended + head * _headDim;
            new Span<float>(output, _headDim).Clear();
            float inverse = 1f / total;
            for (int p = 0; p < count; p++) AddScaled(output, v + (long)p * _headDim, _scores[p] * inverse, _headDim);
        }
    }

    private static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        var sum = Vector256<float>.Zero;
        for (; i + 8 <= n; i += 8) sum = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), sum);
        float total = Vector256.Sum(sum);
        for (; i < n; i++) total += a[i] * b[i];
        return total;
    }

    private static void AddScaled(float* output, float* x, float factor, int n)
    {
        int i = 0;
        var f = Vector256.Create(factor);
        for (; i + 8 <= n; i += 8) Vector256.FusedMultiplyAdd(Vector256.Load(x + i), f, Vector256.Load(output + i)).Store(output + i);
        for (; i < n; i++) output[i] += x[i] * factor;
    }

    private static void Add(float* x, float* y, int n)
    {
        int i = 0;
        for (; i + 8 <= n; i += 8) (Vector256.Load(x + i) + Vector256.Load(y + i)).Store(x + i);
        for (; i < n; i++) x[i] += y[i];
    }

    public void Dispose()
    {
        NativeMemory.AlignedFree(_memory);
        NativeMemory.AlignedFree(_scores);
        _memory = null;
        _scores = null;
        _scoreCapacity = 0;
    }
}
