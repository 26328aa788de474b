using BigModel.Errors;

namespace BigModel.Architectures;

/// <summary>The model families BigModel knows, and how to tell which one a checkpoint or config belongs to.</summary>
public static class ArchitectureCatalog
{
    public static readonly ArchitectureSpec Llama = DecoderFamily("llama", ["llama"], "Llama", qkvBiasDefault: false, oBiasFollowsQkv: true);
    public static readonly ArchitectureSpec Mistral = DecoderFamily("mistral", ["mistral"], "Mistral", qkvBiasDefault: false, oBiasFollowsQkv: true);
    public static readonly ArchitectureSpec Qwen2 = DecoderFamily("qwen2", ["qwen2"], "Qwen2", qkvBiasDefault: true, oBiasFollowsQkv: false);

    public static readonly ArchitectureSpec Bert = new(
        family: "bert", modelTypes: ["bert"], basePrefix: "bert", defaultTie: true, isDecoder: false,
        noSplitPatterns: [@"(^|\.)embeddings$", @"(^|\.)encoder\.layer\.\d+$"],
        forwardOrder: ["embeddings", "encoder", "pooler", "cls", "classifier"],
        baseTensors: BertBase, headTensors: BertMaskedLmHead,
        headArchitectures: ["BertForMaskedLM"], baseArchitectures: ["BertModel"],
        recognises: names => names.Any(n => n.Contains("encoder.layer.", StringComparison.Ordinal) && n.Contains(".attention.self.", StringComparison.Ordinal)));

    public static readonly ArchitectureSpec Gpt2 = new(
        family: "gpt2", modelTypes: ["gpt2"], basePrefix: "transformer", defaultTie: true, isDecoder: true,
        noSplitPatterns: [@"(^|\.)h\.\d+$"],
        forwardOrder: ["wte", "wpe", "h", "ln_f", "lm_head"],
        baseTensors: Gpt2Base, headTensors: Gpt2Head,
        headArchitectures: ["GPT2LMHeadModel"], baseArchitectures: ["GPT2Model"],
        recognises: names => names.Any(n => n.Contains(".attn.c_attn.", StringComparison.Ordinal)));

    /// <summary>All known families.</summary>
    public static IReadOnlyList<ArchitectureSpec> All { get; } = [Llama, Mistral, Qwen2, Bert, Gpt2];

    /// <summary>Families the inference engine runs.</summary>
    public static IReadOnlyList<ArchitectureSpec> Runnable { get; } = [Llama, Mistral, Qwen2, Bert];

    /// <summary>The family named <paramref name="family"/> ("llama", "bert", ...), or a typed error listing them.</summary>
    public static ArchitectureSpec ByFamily(string family) =>
        All.FirstOrDefault(s => string.Equals(s.Family, family, StringComparison.OrdinalIgnoreCase))
        ?? throw new BigModelException(BigModelErrorCode.UnsupportedArchitecture,
            $"'{family}' is not a known model family; known: {string.Join(", ", All.Select(s => s.Family))}.");

    /// <summary>Finds the family by config model_type, else by architecture name, else by recognisable tensor names.</summary>
    public static ArchitectureSpec? Detect(ModelConfig? config, IReadOnlyCollection<string>? tensorNames = null)
    {
        if (config?.ModelType is string type)
        {
            var byType = All.FirstOrDefault(s => s.ModelTypes.Contains(type, StringComparer.OrdinalIgnoreCase));
            if (byType is not null) return byType;
        }
        if (config?.Architecture is string arch)
        {
            var byArch = All.FirstOrDefault(s => s.HeadArchitectures.Contains(arch) || s.BaseArchitectures.Contains(arch));
            if (byArch is not null) return byArch;
        }
        if (tensorNames is { Count: > 0 })
            return All.FirstOrDefault(s => s.Recognises(tensorNames));
        return null;
    }

    /// <summary>Like <see cref="Detect"/> but an unknown family is an error that lists the supported ones.</summary>
    public static ArchitectureSpec Require(ModelConfig config)
    {
        return Detect(config) ?? throw new BigModelException(BigModelErrorCode.UnsupportedArchitecture,
            $"model_type '{config.ModelType ?? "(none)"}' / architecture '{config.Architecture ?? "(none)"}' is not supported; supported model types: {string.Join(", ", All.SelectMany(s => s.ModelTypes))}.",
            config.Path);
    }

    // ---- Llama, Mistral, Qwen2: decoder-only, RMSNorm, rotary embeddings, GQA, SwiGLU ----

    private static ArchitectureSpec DecoderFamily(string family, string[] types, string className, bool qkvBiasDefault, bool oBiasFollowsQkv) => new(
        family: family, modelTypes: types, basePrefix: "model", defaultTie: false, isDecoder: true,
        noSplitPatterns: [@"(^|\.)layers\.\d+$"],
        forwardOrder: ["embed_tokens", "layers", "norm", "rotary_emb", "lm_head"],
        baseTensors: (c, p) => DecoderBase(c, p, qkvBiasDefault, oBiasFollowsQkv),
        headTensors: DecoderHead,
        headArchitectures: [className + "ForCausalLM"], baseArchitectures: [className + "Model"],
        recognises: names => family == "llama" && names.Any(n => n.Contains(".self_attn.q_proj.", StringComparison.Ordinal)));

    private static IEnumerable<TensorTemplate> DecoderBase(ModelConfig c, string p, bool qkvBiasDefault, bool oBiasFollowsQkv)
    {
        int h = c.Require(c.HiddenSize, "hidden_size");
        int layers = c.Require(c.NumHiddenLayers, "num_hidden_layers");
        int heads = c.Require(c.NumAttentionHeads, "num_attention_heads");
        int kv = c.Require(c.EffectiveKeyValueHeads, "num_key_value_heads");
        int inter = c.Require(c.IntermediateSize, "intermediate_size");
        int vocab = c.Require(c.VocabSize, "vocab_size");
        int hd = c.Require(c.EffectiveHeadDim, "head_dim");
        bool qkvBias = c.AttentionBias ?? qkvBiasDefault;
        bool oBias = oBiasFollowsQkv && qkvBias;
        bool mlpBias = c.Raw.TryGetPropertyValue("mlp_bias", out var mb) && mb?.GetValueKind() == System.Text.Json.JsonValueKind.True;

        yield return new($"{p}embed_tokens.weight", [vocab, h]);
        for (int i = 0; i < layers; i++)
        {
            var l = $"{p}layers.{i}.";
            yield return new(l + "self_attn.q_proj.weight", [(long)heads * hd, h]);
            if (qkvBias) yield return new(l + "self_attn.q_proj.bias", [(long)heads * hd]);
            yield return new(l + "self_attn.k_proj.weight", [(long)kv * hd, h]);
            if (qkvBias) yield return new(l + "self_attn.k_proj.bias", [(long)kv * hd]);
            yield return new(l + "self_attn.v_proj.weight", [(long)kv * hd, h]);
            if (qkvBias) yield return new(l + "self_attn.v_proj.bias", [(long)kv * hd]);
            yield return new(l + "self_attn.o_proj.weight", [h, (long)heads * hd]);
            if (oBias) yield return new(l + "self_attn.o_proj.bias", [h]);
            yield return new(l + "mlp.gate_proj.weight", [inter, h]);
            if (mlpBias) yield return new(l + "mlp.gate_proj.bias", [inter]);
            yield return new(l + "mlp.up_proj.weight", [inter, h]);
            if (mlpBias) yield return new(l + "mlp.up_proj.bias", [inter]);
            yield return new(l + "mlp.down_proj.weight", [h, inter]);
            if (mlpBias) yield return new(l + "mlp.down_proj.bias", [h]);
            yield return new(l + "input_layernorm.weight", [h]);
            yield return new(l + "post_attention_layernorm.weight", [h]);
        }
        yield return new($"{p}norm.weight", [h]);
    }

    private static IEnumerable<TensorTemplate> DecoderHead(ModelConfig c, string p)
    {
        // A tied head is the embedding matrix itself: save_pretrained stores it once, under the embedding's name.
        if (c.TieWordEmbeddingsValue == true) yield break;
        yield return new("lm_head.weight", [c.Require(c.VocabSize, "vocab_size"), c.Require(c.HiddenSize, "hidden_size")]);
    }

    // ---- BERT ----

    private static IEnumerable<TensorTemplate> BertBase(ModelConfig c, string p)
    {
        int h = c.Require(c.HiddenSize, "hidden_size");
        int layers = c.Require(c.NumHiddenLayers, "num_hidden_layers");
        int inter = c.Require(c.IntermediateSize, "intermediate_size");
        int vocab = c.Require(c.VocabSize, "vocab_size");
        int positions = c.Require(c.MaxPositionEmbeddings, "max_position_embeddings");
        int types = c.TypeVocabSize ?? 2;
        bool withPooler = c.Architecture is null or "BertModel";

        yield return new($"{p}embeddings.word_embeddings.weight", [vocab, h]);
        yield return new($"{p}embeddings.position_embeddings.weight", [positions, h]);
        yield return new($"{p}embeddings.token_type_embeddings.weight", [types, h]);
        yield return new($"{p}embeddings.LayerNorm.weight", [h]);
        yield return new($"{p}embeddings.LayerNorm.bias", [h]);
        for (int i = 0; i < layers; i++)
        {
            var l = $"{p}encoder.layer.{i}.";
            foreach (var proj in new[] { "query", "key", "value" })
            {
                yield return new($"{l}attention.self.{proj}.weight", [h, h]);
                yield return new($"{l}attention.self.{proj}.bias", [h]);
            }
            yield return new(l + "attention.output.dense.weight", [h, h]);
            yield return new(l + "attention.output.dense.bias", [h]);
            yield return new(l + "attention.output.LayerNorm.weight", [h]);
            yield return new(l + "attention.output.LayerNorm.bias", [h]);
            yield return new(l + "intermediate.dense.weight", [inter, h]);
            yield return new(l + "intermediate.dense.bias", [inter]);
            yield return new(l + "output.dense.weight", [h, inter]);
            yield return new(l + "output.dense.bias", [h]);
            yield return new(l + "output.LayerNorm.weight", [h]);
            yield return new(l + "output.LayerNorm.bias", [h]);
        }
        if (withPooler)
        {
            yield return new($"{p}pooler.dense.weight", [h, h]);
            yield return new($"{p}pooler.dense.bias", [h]);
        }
    }

    private static IEnumerable<TensorTemplate> BertMaskedLmHead(ModelConfig c, string p)
    {
        int h = c.Require(c.HiddenSize, "hidden_size");
        int vocab = c.Require(c.VocabSize, "vocab_size");
        yield return new("cls.predictions.bias", [vocab]);
        yield return new("cls.predictions.transform.dense.weight", [h, h]);
        yield return new("cls.predictions.transform.dense.bias", [h]);
        yield return new("cls.predictions.transform.LayerNorm.weight", [h]);
        yield return new("cls.predictions.transform.LayerNorm.bias", [h]);
        // The decoder weight is tied to the word embeddings and its bias to cls.predictions.bias.
        if (c.TieWordEmbeddingsValue == false) yield return new("cls.predictions.decoder.weight", [vocab, h]);
    }

    // ---- GPT-2 (Conv1D weights are stored [in, out]) ----

    private static IEnumerable<TensorTemplate> Gpt2Base(ModelConfig c, string p)
    {
        int h = c.Require(c.HiddenSize, "n_embd");
        int layers = c.Require(c.NumHiddenLayers, "n_layer");
        int vocab = c.Require(c.VocabSize, "vocab_size");
        int positions = c.Require(c.MaxPositionEmbeddings, "n_positions");
        int inner = c.IntermediateSize ?? 4 * h;

        yield return new($"{p}wte.weight", [vocab, h]);
        yield return new($"{p}wpe.weight", [positions, h]);
        for (int i = 0; i < layers; i++)
        {
            var l = $"{p}h.{i}.";
            yield return new(l + "ln_1.weight", [h]);
            yield return new(l + "ln_1.bias", [h]);
            yield return new(l + "attn.c_attn.weight", [h, 3L * h]);
            yield return new(l + "attn.c_attn.bias", [3L * h]);
            yield return new(l + "attn.c_proj.weight", [h, h]);
            yield return new(l + "attn.c_proj.bias", [h]);
            yield return new(l + "ln_2.weight", [h]);
            yield return new(l + "ln_2.bias", [h]);
            yield return new(l + "mlp.c_fc.weight", [h, inner]);
            yield return new(l + "mlp.c_fc.bias", [inner]);
            yield return new(l + "mlp.c_proj.weight", [inner, h]);
            yield return new(l + "mlp.c_proj.bias", [h]);
        }
        yield return new($"{p}ln_f.weight", [h]);
        yield return new($"{p}ln_f.bias", [h]);
    }

    private static IEnumerable<TensorTemplate> Gpt2Head(ModelConfig c, string p)
    {
        if (c.TieWordEmbeddingsValue == false)
            yield return new("lm_head.weight", [c.Require(c.VocabSize, "vocab_size"), c.Require(c.HiddenSize, "n_embd")]);
    }
}
