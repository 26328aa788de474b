using System.Text.Json;
using System.Text.Json.Nodes;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.IO;

namespace BigModel.Architectures;

/// <summary>
/// The parts of a Hugging Face <c>config.json</c> that sizing, planning and inference need, with transformers'
/// defaults and attribute aliases (GPT-2's n_embd is hidden_size, and so on). Unknown keys are kept in <see cref="Raw"/>.
/// </summary>
public sealed class ModelConfig
{
    /// <summary>
    /// A value the caller cannot do without: present and positive, else <see cref="BigModelErrorCode.ConfigMissingValue"/>
    /// naming <paramref name="key"/> and this config.json.
    /// </summary>
    public int Require(int? value, string key) => value is int v && v > 0
        ? v
        : throw new BigModelException(BigModelErrorCode.ConfigMissingValue, $"'{key}' is required and must be positive.", Path);

    /// <summary>Config files larger than this are refused: real ones are a few kilobytes.</summary>
    public const long MaxConfigBytes = 16 * 1024 * 1024;

    // Bounds far beyond any real model, so that arithmetic and loops driven by a config stay small and exact.
    public const int MaxLayers = 10_000;
    public const int MaxWidth = 1 << 20;
    public const int MaxHeads = 1 << 16;
    public const int MaxVocabulary = 1 << 24;
    public const int MaxPositions = 1 << 24;

    private ModelConfig(string? path, JsonObject raw)
    {
        Path = path;
        Raw = raw;
    }

    public string? Path { get; }
    public JsonObject Raw { get; }

    public string? ModelType { get; private init; }
    public IReadOnlyList<string> Architectures { get; private init; } = [];
    public int? HiddenSize { get; private init; }
    public int? NumHiddenLayers { get; private init; }
    public int? NumAttentionHeads { get; private init; }
    public int? NumKeyValueHeads { get; private init; }
    public int? IntermediateSize { get; private init; }
    public int? VocabSize { get; private init; }
    public int? MaxPositionEmbeddings { get; private init; }
    public int? HeadDim { get; private init; }
    public int? TypeVocabSize { get; private init; }
    public bool? TieWordEmbeddingsValue { get; private init; }
    public bool? AttentionBias { get; private init; }
    public double? RmsNormEps { get; private init; }
    public double? LayerNormEps { get; private init; }
    public double? RopeTheta { get; private init; }
    public string? HiddenAct { get; private init; }
    public DType? TorchDType { get; private init; }
    public IReadOnlyList<int> EosTokenIds { get; private init; } = [];
    public int? BosTokenId { get; private init; }
    public int? PadTokenId { get; private init; }

    /// <summary>The first entry of <c>architectures</c>, e.g. LlamaForCausalLM.</summary>
    public string? Architecture => Architectures.Count > 0 ? Architectures[0] : null;

    /// <summary>Head dimension: explicit head_dim, else hidden_size / num_attention_heads.</summary>
    public int? EffectiveHeadDim => HeadDim ?? (HiddenSize is int h && NumAttentionHeads is int n && n > 0 ? h / n : null);

    /// <summary>KV heads: explicit num_key_value_heads, else the attention head count (multi-head attention).</summary>
    public int? EffectiveKeyValueHeads => NumKeyValueHeads ?? NumAttentionHeads;

    /// <summary>
    /// True when <paramref name="path"/> is a model config rather than a checkpoint: an existing *.json file that is not
    /// a shard index (*.index.json). Sizing and planning take either, and decide with this one rule.
    /// </summary>
    public static bool IsConfigFile(string path) =>
        System.IO.Path.GetExtension(path).Equals(".json", StringComparison.OrdinalIgnoreCase)
        && !path.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase)
        && File.Exists(path);

    /// <summary>Loads and validates <paramref name="path"/>.</summary>
    public static ModelConfig Load(string path) =>
        Parse(SmallFile.ReadAllBytes(path, MaxConfigBytes, BigModelErrorCode.ConfigInvalidValue, BigModelErrorCode.ConfigNotJson, "config.json"), path);

    /// <summary>Parses config.json text. <paramref name="path"/> only names the source in errors.</summary>
    public static ModelConfig Parse(ReadOnlySpan<byte> json, string? path = null)
    {
        if (!System.Text.Unicode.Utf8.IsValid(json))
            throw new BigModelException(BigModelErrorCode.ConfigNotJson, "not valid UTF-8.", path);
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { MaxDepth = 64, AllowTrailingCommas = false });
            // JsonObject builds its dictionary lazily; do it here so a duplicate key is reported as bad JSON.
            if (node is JsonObject top) _ = top.Count;
        }
        catch (JsonException e)
        {
            throw new BigModelException(BigModelErrorCode.ConfigNotJson, $"not valid JSON: {e.Message}", path, e.BytePositionInLine, inner: e);
        }
        catch (ArgumentException e)
        {
            throw new BigModelException(BigModelErrorCode.ConfigNotJson, $"not valid UTF-8 JSON: {e.Message}", path, inner: e);
        }
        catch (InvalidOperationException e)
        {
            throw new BigModelException(BigModelErrorCode.ConfigNotJson, JsonStrings.InvalidText + ".", path, inner: e);
        }
        if (node is not JsonObject obj)
            throw new BigModelException(BigModelErrorCode.ConfigNotJson, "the top level must be a JSON object.", path);
        // Values and nested names are decoded as they are read below.
        return JsonStrings.Guard(BigModelErrorCode.ConfigNotJson, path, () => FromObject(obj, path));
    }

    private static ModelConfig FromObject(JsonObject obj, string? path)
    {

        var reader = new Reader(obj, path);
        var modelType = reader.String("model_type");
        bool gpt2Style = modelType is "gpt2" or "gpt_neo" or "gptj";
        return new ModelConfig(path, obj)
        {
            ModelType = modelType,
            Architectures = reader.StringArray("architectures"),
            HiddenSize = reader.Dim("hidden_size", MaxWidth) ?? reader.Dim("n_embd", MaxWidth) ?? reader.Dim("d_model", MaxWidth),
            NumHiddenLayers = reader.Dim("num_hidden_layers", MaxLayers) ?? reader.Dim("n_layer", MaxLayers) ?? reader.Dim("num_layers", MaxLayers),
            NumAttentionHeads = reader.Dim("num_attention_heads", MaxHeads) ?? reader.Dim("n_head", MaxHeads),
            NumKeyValueHeads = reader.Dim("num_key_value_heads", MaxHeads),
            IntermediateSize = reader.Dim("intermediate_size", MaxWidth) ?? reader.Dim("n_inner", MaxWidth) ?? reader.Dim("ffn_dim", MaxWidth),
            VocabSize = reader.Dim("vocab_size", MaxVocabulary),
            MaxPositionEmbeddings = reader.Dim("max_position_embeddings", MaxPositions) ?? reader.Dim("n_positions", MaxPositions) ?? reader.Dim("n_ctx", MaxPositions),
            HeadDim = reader.Dim("head_dim", MaxWidth),
            TypeVocabSize = reader.Dim("type_vocab_size", MaxVocabulary),
            TieWordEmbeddingsValue = reader.Bool("tie_word_embeddings"),
            AttentionBias = reader.Bool("attention_bias"),
            RmsNormEps = reader.Double("rms_norm_eps"),
            LayerNormEps = reader.Double("layer_norm_eps") ?? (gpt2Style ? reader.Double("layer_norm_epsilon") : null),
            RopeTheta = reader.Double("rope_theta") ?? reader.RopeThetaFromParameters(),
            HiddenAct = reader.String("hidden_act") ?? reader.String("activation_function"),
            TorchDType = reader.DTypeValue("torch_dtype") ?? reader.DTypeValue("dtype"),
            EosTokenIds = reader.IntOrIntArray("eos_token_id"),
            BosTokenId = reader.Int("bos_token_id"),
            PadTokenId = reader.Int("pad_token_id"),
        };
    }

    /// <summary>Reads typed values, turning every wrong type or out-of-range number into a typed error.</summary>
    private readonly struct Reader(JsonObject obj, string? path)
    {
        // Dimensions above this are not real models; refusing them keeps later size arithmetic far from overflow.
        // Values are kept as int, so the bound is int's largest.
        private const long MaxDimension = int.MaxValue;

        private JsonNode? Get(string key) => obj.TryGetPropertyValue(key, out var v) ? v : null;

        private BigModelException Invalid(string key, string what) =>
            new(BigModelErrorCode.ConfigInvalidValue, $"'{key}' {what}.", path);

        public string? String(string key) => Get(key) switch
        {
            null => null,
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            _ => throw Invalid(key, "must be a string"),
        };

        public IReadOnlyList<string> StringArray(string key)
        {
            var node = Get(key);
            if (node is null) return [];
            if (node is not JsonArray array) throw Invalid(key, "must be an array of strings");
            var list = new List<string>(array.Count);
            foreach (var item in array)
            {
                if (item is JsonValue v && v.TryGetValue<string>(out var s)) list.Add(s);
                else throw Invalid(key, "must be an array of strings");
            }
            return list;
        }

        public int? Int(string key)
        {
            var node = Get(key);
            if (node is null) return null;
            if (node is JsonValue v)
            {
                if (v.TryGetValue<long>(out var l)) return CheckRange(key, l);
                if (v.TryGetValue<double>(out var d) && Math.Floor(d) == d && Math.Abs(d) < MaxDimension) return CheckRange(key, (long)d);
                if (v.GetValueKind() == JsonValueKind.Null) return null;
            }
            throw Invalid(key, "must be a whole number");
        }

        /// <summary>A positive model dimension no larger than <paramref name="max"/>.</summary>
        public int? Dim(string key, int max)
        {
            var value = Int(key);
            if (value is null) return null;
            if (value < 0 || value > max) throw Invalid(key, $"is {value}; it must lie between 0 and {max}");
            return value;
        }

        private int CheckRange(string key, long value)
        {
            // Token ids can legitimately be -1 in some configs ("no pad token").
            if (value < -1 || value > MaxDimension) throw Invalid(key, $"is {value}, outside the range a model can have");
            return (int)value;
        }

        public IReadOnlyList<int> IntOrIntArray(string key)
        {
            var node = Get(key);
            if (node is null) return [];
            if (node is JsonArray array)
            {
                var list = new List<int>();
                foreach (var item in array)
                {
                    if (item is JsonValue v && v.TryGetValue<long>(out var l)) list.Add(CheckRange(key, l));
                    else throw Invalid(key, "must be a whole number or an array of them");
                }
                return list;
            }
            return Int(key) is int single ? [single] : [];
        }

        public bool? Bool(string key) => Get(key) switch
        {
            null => null,
            JsonValue v when v.TryGetValue<bool>(out var b) => b,
            JsonValue v when v.GetValueKind() == JsonValueKind.Null => null,
            _ => throw Invalid(key, "must be true or false"),
        };

        public double? Double(string key)
        {
            var node = Get(key);
            if (node is null) return null;
            if (node is JsonValue v)
            {
                if (v.TryGetValue<double>(out var d) && double.IsFinite(d)) return d;
                if (v.GetValueKind() == JsonValueKind.Null) return null;
            }
            throw Invalid(key, "must be a finite number");
        }

        public DType? DTypeValue(string key)
        {
            var text = String(key);
            if (text is null) return null;
            return DTypes.TryParse(text, out var d) ? d : throw Invalid(key, $"names an unknown dtype '{text}'");
        }

        public double? RopeThetaFromParameters()
        {
            if (Get("rope_parameters") is JsonObject rope && rope.TryGetPropertyValue("rope_theta", out var theta)
                && theta is JsonValue v && v.TryGetValue<double>(out var d) && double.IsFinite(d))
                return d;
            return null;
        }
    }
}
