using System.Text.Json;
using System.Text.Json.Nodes;
using BigModel.Architectures;
using BigModel.Errors;

namespace BigModel.Inference;

/// <summary>
/// What the files beside the weights say about running the model: EOS ids (generation_config.json overrides
/// config.json, as transformers does) and the sentence-transformers pipeline (modules.json's Normalize step,
/// 1_Pooling/config.json, sentence_bert_config.json's max_seq_length).
/// </summary>
internal sealed class ModelFolderSettings
{
    public IReadOnlyList<int> EosTokenIds { get; private init; } = [];
    public bool Normalize { get; private init; }
    public EmbeddingPooling Pooling { get; private init; } = EmbeddingPooling.Mean;
    public int? MaxSequenceLength { get; private init; }

    public static ModelFolderSettings Read(string directory, ModelConfig? config)
    {
        var eos = config?.EosTokenIds ?? [];
        var generation = Path.Combine(directory, "generation_config.json");
        if (File.Exists(generation))
        {
            var g = ModelConfig.Load(generation);
            if (g.Raw.ContainsKey("eos_token_id")) eos = g.EosTokenIds;
        }

        bool normalize = false;
        var pooling = EmbeddingPooling.Mean;
        if (ReadJson(Path.Combine(directory, "modules.json")) is JsonArray modules)
        {
            foreach (var m in modules.OfType<JsonObject>())
            {
                var type = Text(m, "type") ?? "";
                if (type.EndsWith(".Normalize", StringComparison.Ordinal)) normalize = true;
                if (type.EndsWith(".Pooling", StringComparison.Ordinal) && Text(m, "path") is string poolPath
                    && IO.PathSafety.LexicalProblem(poolPath) is null
                    && ReadJson(Path.Combine(directory, poolPath, "config.json")) is JsonObject pool)
                {
                    if (Flag(pool, "pooling_mode_cls_token")) pooling = EmbeddingPooling.Cls;
                    if (Flag(pool, "pooling_mode_mean_tokens")) pooling = EmbeddingPooling.Mean;
                }
            }
        }
        int? maxLength = null;
        if (ReadJson(Path.Combine(directory, "sentence_bert_config.json")) is JsonObject sbert
            && sbert.TryGetPropertyValue("max_seq_length", out var n) && n is JsonValue v && v.TryGetValue<int>(out var len) && len > 1)
            maxLength = len;
        return new ModelFolderSettings { EosTokenIds = eos, Normalize = normalize, Pooling = pooling, MaxSequenceLength = maxLength };
    }

    private static JsonNode? ReadJson(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            if (new FileInfo(path).Length > ModelConfig.MaxConfigBytes)
                throw new BigModelException(BigModelErrorCode.ConfigInvalidValue, $"the file is larger than {ModelConfig.MaxConfigBytes} bytes.", path);
            return JsonNode.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new BigModelException(BigModelErrorCode.ConfigNotJson, $"not valid JSON: {e.Message}", path, inner: e);
        }
        catch (IOException e)
        {
            throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, path, inner: e);
        }
    }

    private static string? Text(JsonObject o, string key) =>
        o.TryGetPropertyValue(key, out var v) && v is JsonValue j && j.TryGetValue<string>(out var s) ? s : null;

    private static bool Flag(JsonObject o, string key) =>
        o.TryGetPropertyValue(key, out var v) && v is JsonValue j && j.TryGetValue<bool>(out var b) && b;
}
