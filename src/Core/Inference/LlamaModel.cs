using System.Text.Json.Nodes;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Errors;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace BigModel.Inference;

/// <summary>
/// The Llama family as a text generator: Llama, Mistral and Qwen2 share one decoder.
///
///   tokens → embed_tokens → N × [ x += Attention(RMSNorm(x)) ; x += SwiGLU(RMSNorm(x)) ] → RMSNorm → lm_head → logits
///
/// Attention is causal with rotary position embeddings (transformers' rotate_half convention), grouped-query
/// (several query heads share a key/value head), optional q/k/v (and o) biases, and a sliding window for Mistral.
/// The weights are not held here: each forward step asks for a block's weights just before it runs, so blocks can
/// live on a GPU, in host memory or on disk without this file knowing. Blocks, in order: embed_tokens, each layer,
/// the final norm, the head (which is the embedding matrix itself when the model ties them).
/// </summary>
internal sealed class LlamaModel
{
    // ---------------------------------------------------------------- hyper-parameters (config.json)

    public int Hidden { get; }
    public int Layers { get; }
    public int Heads { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }
    public int Intermediate { get; }
    public int Vocab { get; }
    public double RmsEps { get; }
    public bool TiedHead { get; }

    private readonly Func<Tensor, Tensor> _act;
    private readonly int?[] _window;              // per layer: attend to at most this many latest positions
    private readonly double[] _inverseFrequencies; // rotary: one frequency per pair of head dimensions
    private readonly ILinearKernel _linear;
    private readonly bool _oneTokenOps;            // with the native decode kernel: one-token norms and rotations natively too
    private readonly OneTokenLayer? _oneTokenLayer; // with the native decode kernel: whole one-token layers natively
    private readonly Dictionary<string, (Tensor Cos, Tensor Sin)> _rotary = new(StringComparer.Ordinal);

    /// <summary>Layers run by <see cref="OneTokenLayer"/> so far.</summary>
    public long NativeLayerSteps { get; private set; }

    /// <summary>Layer boundaries at which the next layer's first projections were warmed (see <see cref="OneTokenLayer"/>).</summary>
    public long NextLayerWarms => _oneTokenLayer?.NextLayerWarms ?? 0;

    /// <summary>The blocks in forward order; see the class summary.</summary>
    public IReadOnlyList<ModelBlock> Blocks { get; }

    private int EmbedBlock => 0;
    private int LayerBlock(int layer) => 1 + layer;
    private int NormBlock => Layers + 1;
    private int HeadBlock => Layers + 2;

    private LlamaModel(ModelConfig c, ArchitectureSpec spec, Checkpoint checkpoint, ILinearKernel linear)
    {
        Hidden = c.Require(c.HiddenSize, "hidden_size");
        Layers = c.Require(c.NumHiddenLayers, "num_hidden_layers");
        Heads = c.Require(c.NumAttentionHeads, "num_attention_heads");
        KvHeads = c.Require(c.EffectiveKeyValueHeads, "num_key_value_heads");
        HeadDim = c.Require(c.EffectiveHeadDim, "head_dim");
        Intermediate = c.Require(c.IntermediateSize, "intermediate_size");
        Vocab = c.Require(c.VocabSize, "vocab_size");
        if (Heads % KvHeads != 0)
            throw new BigModelException(BigModelErrorCode.ConfigInvalidValue, $"num_attention_heads {Heads} is not a multiple of num_key_value_heads {KvHeads}.", c.Path);
        if (HeadDim % 2 != 0)
            throw new BigModelException(BigModelErrorCode.ConfigInvalidValue, $"head_dim {HeadDim} must be even for rotary embeddings.", c.Path);
        RmsEps = c.RmsNormEps ?? 1e-6;
        TiedHead = spec.TiesWordEmbeddings(c);
        _act = Activation.Parse(c.HiddenAct ?? "silu", c.Path);
        _window = SlidingWindows(c, spec, Layers);
        _inverseFrequencies = RotaryFrequencies(c, HeadDim);
        _linear = linear;
        _oneTokenOps = linear is DecodeKernel;
        if (linear is DecodeKernel kernel && (c.HiddenAct ?? "silu").ToLowerInvariant() is "silu" or "swish")
            _oneTokenLayer = new OneTokenLayer(kernel, Hidden, Heads, KvHeads, HeadDim, Intermediate, RmsEps);
        Blocks = PlanBlocks(checkpoint, spec, c);
    }

    public static LlamaModel Create(Checkpoint checkpoint, ArchitectureSpec spec, ModelConfig config, ILinearKernel? linear = null) =>
        new(config, spec, checkpoint, linear ?? TorchLinearKernel.Instance);

    // ---------------------------------------------------------------- forward

    /// <summary>
    /// Runs tokens <paramref name="ids"/> (<c>[1, T]</c>, int64) at positions start..start+T, appending their keys and
    /// values to <paramref name="cache"/>. Returns float32 logits <c>[1, T, vocab]</c>, or <c>[1, 1, vocab]</c> for
    /// the last position only when <paramref name="allPositions"/> is false (all generation needs).
    /// </summary>
    public Tensor Forward(Tensor ids, int start, KvCache cache, Func<int, BlockWeights> weights, bool allPositions, CancellationToken cancel)
    {
        using var noGrad = no_grad();
        Tensor x;
        using (var w = weights(EmbedBlock))
        using (var scope = NewDisposeScope())
            x = Embed(w, ids).MoveToOuterDisposeScope();

        for (int layer = 0; layer < Layers; layer++)
        {
            cancel.ThrowIfCancellationRequested();
            using var w = weights(LayerBlock(layer));
            using var scope = NewDisposeScope();
            var next = Layer(layer, w, x.to(w.Device), cache, start).MoveToOuterDisposeScope();
            x.Dispose();
            x = next;
        }

        if (!allPositions && x.shape[1] > 1)
        {
            var last = x.narrow(1, x.shape[1] - 1, 1).contiguous();
            x.Dispose();
            x = last;
        }

        using (var w = weights(NormBlock))
        using (var scope = NewDisposeScope())
        {
            var next = RmsNorm(x.to(w.Device), w["weight"]).MoveToOuterDisposeScope();
            x.Dispose();
            x = next;
        }

        using (var w = weights(HeadBlock))
        using (var scope = NewDisposeScope())
        {
            var logits = _linear.Linear(x.to(w.Device), w["weight"], null).to(ScalarType.Float32).MoveToOuterDisposeScope();
            x.Dispose();
            return logits;
        }
    }

    private static Tensor Embed(BlockWeights w, Tensor ids)
    {
        var table = w["weight"];
        var rows = table.index_select(0, ids.flatten().to(table.device));
        return rows.view(ids.shape[0], ids.shape[1], -1).to(w.Device);
    }

    /// <summary>One decoder layer: pre-norm attention and pre-norm SwiGLU MLP, each added back to the residual stream.</summary>
    private unsafe Tensor Layer(int layer, BlockWeights w, Tensor x, KvCache cache, int start)
    {
        if (_oneTokenLayer is not null && x.shape is [1, 1, _] && _oneTokenLayer.Accepts(layer, x, w))
        {
            // The tables in the token's type, as the tensor path multiplies by them.
            var (cos, sin) = RotaryTable(x.device, x.dtype, start + 1);
            long offset = (long)start * HeadDim * cos.element_size();
            NativeLayerSteps++;
            return _oneTokenLayer.Run(layer, w, x, cache, start, (byte*)TorchTypes.DataPointer(cos) + offset,
                (byte*)TorchTypes.DataPointer(sin) + offset, _window[layer]);
        }
        var h = RmsNorm(x, w["input_layernorm.weight"]);
        x = x.Plus(Attention(layer, w, h, cache, start));
        h = RmsNorm(x, w["post_attention_layernorm.weight"]);
        return x.Plus(Mlp(w, h));
    }

    private Tensor Attention(int layer, BlockWeights w, Tensor h, KvCache cache, int start)
    {
        long b = h.shape[0], t = h.shape[1];
        var qProjection = Linear(w, "self_attn.q_proj", h);
        var kProjection = Linear(w, "self_attn.k_proj", h);
        var q = qProjection.view(b, t, Heads, HeadDim).transpose(1, 2);
        var k = kProjection.view(b, t, KvHeads, HeadDim).transpose(1, 2);
        var v = Linear(w, "self_attn.v_proj", h).view(b, t, KvHeads, HeadDim).transpose(1, 2);

        var (cos, sin) = Rotary(w.Device, h.dtype, start, t);
        if (!(_oneTokenOps && OneTokenOps.TryRotate(qProjection, kProjection, cos, sin, HeadDim)))
        {
            q = (q * cos).Plus(RotateHalf(q) * sin);
            k = (k * cos).Plus(RotateHalf(k) * sin);
        }

        var (keys, values) = cache.Append(layer, k, v, start);
        long length = start + t;
        int group = Heads / KvHeads;
        int? window = _window[layer];

        Tensor attended;
        if (t == 1)
        {
            // Decoding: the one query sees every cached position (within the window), so no mask is needed, and the
            // query heads sharing a key/value head are stacked as rows instead of copying keys and values per head.
            if (window is int wdw && length > wdw)
            {
                keys = keys.narrow(2, length - wdw, wdw);
                values = values.narrow(2, length - wdw, wdw);
            }
            var grouped = q.reshape(b, KvHeads, group, HeadDim);
            if (h.device_type == TorchSharp.DeviceType.CPU && h.dtype is ScalarType.Float16 or ScalarType.BFloat16)
            {
                // libtorch's CPU attention in half precision takes about ten times as long as in float32 (185 against
                // 20 µs a layer measured here); the casts cost a few microseconds, and float32 is never less exact.
                attended = F.scaled_dot_product_attention(grouped.to(ScalarType.Float32), keys.to(ScalarType.Float32), values.to(ScalarType.Float32))
                    .to(h.dtype).reshape(b, Heads, 1, HeadDim);
            }
            else
            {
                attended = F.scaled_dot_product_attention(grouped, keys, values).reshape(b, Heads, 1, HeadDim);
            }
        }
        else
        {
            keys = keys.repeat_interleave(group, dim: 1);
            values = values.repeat_interleave(group, dim: 1);
            bool plainCausal = start == 0 && (window is null || length <= window);
            attended = plainCausal
                ? F.scaled_dot_product_attention(q, keys, values, is_casual: true)
                : F.scaled_dot_product_attention(q, keys, values, CausalMask(start, t, length, window, w.Device));
        }
        var merged = attended.transpose(1, 2).reshape(b, t, Heads * HeadDim);
        return Linear(w, "self_attn.o_proj", merged);
    }

    /// <summary>SwiGLU: down(act(gate(h)) · up(h)).</summary>
    private Tensor Mlp(BlockWeights w, Tensor h) =>
        Linear(w, "mlp.down_proj", _act(Linear(w, "mlp.gate_proj", h)) * Linear(w, "mlp.up_proj", h));

    private Tensor Linear(BlockWeights w, string name, Tensor x) =>
        _linear.Linear(x, w[name + ".weight"], w.Optional(name + ".bias"));

    /// <summary>RMSNorm as transformers computes it: in float32, scaled by the weight in the input's type.</summary>
    private Tensor RmsNorm(Tensor x, Tensor weight)
    {
        if (_oneTokenOps && OneTokenOps.TryRmsNorm(x, weight, RmsEps, out var fused)) return fused;
        var type = x.dtype;
        var f = x.to(ScalarType.Float32);
        var normed = f * (f * f).mean([-1], keepdim: true).Plus(RmsEps).rsqrt();
        return weight * normed.to(type);
    }

    /// <summary>True where query position start+i may attend to key position j: causal, and within the window.</summary>
    private static Tensor CausalMask(int start, long t, long length, int? window, Device device)
    {
        var allowed = new bool[t * length];
        for (long i = 0; i < t; i++)
            for (long j = 0; j < length; j++)
                allowed[i * length + j] = j <= start + i && (window is not int wdw || start + i - j < wdw);
        return tensor(allowed, [t, length], device: device);
    }

    // ---------------------------------------------------------------- rotary position embeddings

    /// <summary>(x1, x2) → (−x2, x1) over the two halves of the head dimension.</summary>
    private static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        return cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
    }

    /// <summary>cos and sin for positions start..start+t, <c>[t, headDim]</c>, cached per device and grown on demand.</summary>
    private (Tensor Cos, Tensor Sin) Rotary(Device device, ScalarType type, int start, long t)
    {
        var table = RotaryTable(device, type, start + t);
        return (table.Cos.narrow(0, start, t), table.Sin.narrow(0, start, t));
    }

    /// <summary>The whole cached cos and sin tables (<c>[capacity, headDim]</c>, contiguous), holding at least <paramref name="needed"/> positions.</summary>
    private (Tensor Cos, Tensor Sin) RotaryTable(Device device, ScalarType type, long needed)
    {
        var key = device + "/" + type;
        if (!_rotary.TryGetValue(key, out var table) || table.Cos.shape[0] < needed)
        {
            // Doubling: a long generation asks for one more position per token, and regrowing to the exact size each
            // time would rebuild the tables once per token.
            long capacity = Math.Max(needed, Math.Max(256, table.Cos is null ? 0 : 2 * table.Cos.shape[0]));
            if (table.Cos is not null) { table.Cos.Dispose(); table.Sin.Dispose(); }
            // float32 like transformers: positions ⊗ inverse frequencies, duplicated over both halves.
            using var scope = NewDisposeScope();
            var inv = tensor(_inverseFrequencies.Select(f => (float)f).ToArray(), device: device);
            var positions = tensor(Enumerable.Range(0, (int)capacity).Select(p => (float)p).ToArray(), device: device);
            var freqs = outer(positions, inv);
            var emb = cat([freqs, freqs], -1);
            table = (TorchTypes.Own(emb.cos().to(type)), TorchTypes.Own(emb.sin().to(type)));
            _rotary[key] = table;
        }
        return table;
    }

    /// <summary>Frees the cached rotary tables and the one-token layer's buffers: the model runs no more after this.</summary>
    public void ReleaseCaches()
    {
        foreach (var (cos, sin) in _rotary.Values) { cos.Dispose(); sin.Dispose(); }
        _rotary.Clear();
        _oneTokenLayer?.Dispose();
    }

    /// <summary>
    /// θ^(−2i/d) for each pair i, computed in float32 as transformers does, then adjusted by <c>rope_scaling</c>
    /// ("linear" divides every frequency; "llama3" divides only the low ones, blending in between).
    /// </summary>
    private static double[] RotaryFrequencies(ModelConfig c, int headDim)
    {
        float theta = (float)(c.RopeTheta ?? 10000.0);
        var inv = new double[headDim / 2];
        for (int i = 0; i < inv.Length; i++) inv[i] = 1.0f / MathF.Pow(theta, (float)(2 * i) / headDim);

        var scaling = c.Raw.TryGetPropertyValue("rope_scaling", out var node) && node is JsonObject o ? o : null;
        var type = scaling is null ? "default" : (Text(scaling, "rope_type") ?? Text(scaling, "type") ?? "default");
        switch (type)
        {
            case "default":
                return inv;
            case "linear":
            {
                double factor = Number(scaling!, "factor", c);
                return inv.Select(f => f / factor).ToArray();
            }
            case "llama3":
            {
                double factor = Number(scaling!, "factor", c);
                double low = Number(scaling!, "low_freq_factor", c);
                double high = Number(scaling!, "high_freq_factor", c);
                double original = Number(scaling!, "original_max_position_embeddings", c);
                double lowWavelength = original / low, highWavelength = original / high;
                return inv.Select(f =>
                {
                    double wavelength = 2 * Math.PI / f;
                    if (wavelength < highWavelength) return f;
                    if (wavelength > lowWavelength) return f / factor;
                    double smooth = (original / wavelength - low) / (high - low);
                    return (1 - smooth) * f / factor + smooth * f;
                }).ToArray();
            }
            default:
                throw new BigModelException(BigModelErrorCode.UnsupportedArchitecture,
                    $"rope_scaling type '{type}' is not supported; supported: default, linear, llama3.", c.Path);
        }
    }

    private static string? Text(JsonObject o, string key) =>
        o.TryGetPropertyValue(key, out var v) && v is JsonValue j && j.TryGetValue<string>(out var s) ? s : null;

    private static double Number(JsonObject o, string key, ModelConfig c) =>
        o.TryGetPropertyValue(key, out var v) && v is JsonValue j && j.TryGetValue<double>(out var d) && double.IsFinite(d) && d > 0
            ? d
            : throw new BigModelException(BigModelErrorCode.ConfigInvalidValue, $"rope_scaling.{key} must be a positive number.", c.Path);

    /// <summary>
    /// Mistral attends to the latest <c>sliding_window</c> positions in every layer; Qwen2 only when
    /// <c>use_sliding_window</c> is set, and then from layer <c>max_window_layers</c> on; Llama never.
    /// </summary>
    private static int?[] SlidingWindows(ModelConfig c, ArchitectureSpec spec, int layers)
    {
        var result = new int?[layers];
        int? window = c.Raw.TryGetPropertyValue("sliding_window", out var n) && n is JsonValue j && j.TryGetValue<long>(out var wv) && wv > 0
            ? (int)Math.Min(wv, int.MaxValue)
            : null;
        if (window is null) return result;
        if (spec.Family == "mistral")
        {
            Array.Fill(result, window);
        }
        else if (spec.Family == "qwen2" && c.Raw.TryGetPropertyValue("use_sliding_window", out var u) && u is JsonValue uv && uv.TryGetValue<bool>(out var use) && use)
        {
            int from = c.Raw.TryGetPropertyValue("max_window_layers", out var m) && m is JsonValue mv && mv.TryGetValue<int>(out var mw) ? mw : 0;
            for (int i = Math.Max(0, from); i < layers; i++) result[i] = window;
        }
        return result;
    }

    // ---------------------------------------------------------------- blocks and their tensors

    private IReadOnlyList<ModelBlock> PlanBlocks(Checkpoint checkpoint, ArchitectureSpec spec, ModelConfig c)
    {
        var t = new ModelTensors(checkpoint, spec, c, "embed_tokens.weight");
        var p = t.Prefix;
        var blocks = new List<ModelBlock>(Layers + 3);
        var embed = t.Require("embed_tokens.weight", Vocab, Hidden);
        t.ThrowIfInvalid();
        blocks.Add(new ModelBlock(0, p + "embed_tokens", [new BlockTensor("weight", embed!, Gathered: true)]));

        long q = (long)Heads * HeadDim, kv = (long)KvHeads * HeadDim;
        for (int i = 0; i < Layers; i++)
        {
            var l = $"layers.{i}.";
            var list = new List<(string, TensorInfo?)>
            {
                ("input_layernorm.weight", t.Require(l + "input_layernorm.weight", Hidden)),
                ("self_attn.q_proj.weight", t.Require(l + "self_attn.q_proj.weight", q, Hidden)),
                ("self_attn.k_proj.weight", t.Require(l + "self_attn.k_proj.weight", kv, Hidden)),
                ("self_attn.v_proj.weight", t.Require(l + "self_attn.v_proj.weight", kv, Hidden)),
                ("self_attn.o_proj.weight", t.Require(l + "self_attn.o_proj.weight", Hidden, q)),
                ("post_attention_layernorm.weight", t.Require(l + "post_attention_layernorm.weight", Hidden)),
                ("mlp.gate_proj.weight", t.Require(l + "mlp.gate_proj.weight", Intermediate, Hidden)),
                ("mlp.up_proj.weight", t.Require(l + "mlp.up_proj.weight", Intermediate, Hidden)),
                ("mlp.down_proj.weight", t.Require(l + "mlp.down_proj.weight", Hidden, Intermediate)),
            };
            foreach (var (name, size) in new[] { ("self_attn.q_proj", q), ("self_attn.k_proj", kv), ("self_attn.v_proj", kv), ("self_attn.o_proj", (long)Hidden),
                         ("mlp.gate_proj", (long)Intermediate), ("mlp.up_proj", (long)Intermediate), ("mlp.down_proj", (long)Hidden) })
                if (t.Expects(l + name + ".bias")) list.Add((name + ".bias", t.Require(l + name + ".bias", size)));
            blocks.Add(Block(1 + i, p + $"layers.{i}", list.ToArray()));
        }
        blocks.Add(Block(Layers + 1, p + "norm", ("weight", t.Require("norm.weight", Hidden))));

        // A tied head multiplies by the embedding matrix: the same checkpoint tensor, placed where the embedding is.
        var head = TiedHead ? embed : t.RequireName("lm_head.weight", Vocab, Hidden);
        blocks.Add(Block(Layers + 2, "lm_head", ("weight", head)));
        t.ThrowIfInvalid();
        return blocks;
    }

    private static ModelBlock Block(int index, string name, params (string Key, TensorInfo? Tensor)[] tensors) =>
        new(index, name, tensors.Where(x => x.Tensor is not null).Select(x => new BlockTensor(x.Key, x.Tensor!)).ToList());
}
