using System.Text.Json;
using BigModel.Errors;
using BigModel.IO;

namespace BigModel.Checkpoints;

/// <summary>
/// A Hugging Face sharded-checkpoint index (<c>model.safetensors.index.json</c>, <c>pytorch_model.bin.index.json</c>):
/// <c>{"metadata": {"total_size": N}, "weight_map": {"tensor": "shard file"}}</c>.
/// </summary>
public sealed class ShardIndex
{
    /// <summary>Index files larger than this are refused (a 1,000-shard, 100,000-tensor index is a few MB).</summary>
    public const long MaxIndexBytes = 256L * 1024 * 1024;

    private ShardIndex(string path, long? totalSize, IReadOnlyList<KeyValuePair<string, string>> weightMap, IReadOnlyDictionary<string, JsonElement> metadata)
    {
        Path = path;
        TotalSize = totalSize;
        WeightMap = weightMap;
        Metadata = metadata;
    }

    public string Path { get; }

    /// <summary>metadata.total_size as written, if present.</summary>
    public long? TotalSize { get; }

    /// <summary>tensor name → shard file name (relative to the index's folder), in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> WeightMap { get; }

    /// <summary>Everything under "metadata".</summary>
    public IReadOnlyDictionary<string, JsonElement> Metadata { get; }

    /// <summary>Shard file names in natural order (model-00001-of-00003 first), each once.</summary>
    public IReadOnlyList<string> Shards =>
        WeightMap.Select(p => p.Value).Distinct(StringComparer.Ordinal).Order(Architectures.NaturalOrder.Instance).ToList();

    public static ShardIndex Read(string path) =>
        Parse(SmallFile.ReadAllBytes(path, MaxIndexBytes, BigModelErrorCode.IndexNotJson, "the index"), path);

    public static ShardIndex Parse(ReadOnlySpan<byte> json, string path)
    {
        // Utf8JsonReader checks string contents only when they are read; reject bad bytes before anything else.
        if (!System.Text.Unicode.Utf8.IsValid(json))
            throw new BigModelException(BigModelErrorCode.IndexNotJson, "the index is not valid UTF-8.", path);
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 64 });
        List<KeyValuePair<string, string>>? weightMap = null;
        long? totalSize = null;
        var metadata = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                throw new BigModelException(BigModelErrorCode.IndexNotJson, "the index must be a JSON object.", path, reader.TokenStartIndex);
            var seenTop = new HashSet<string>(StringComparer.Ordinal);
            while (Read(ref reader, path) != JsonTokenType.EndObject)
            {
                var key = reader.GetString()!;
                if (!seenTop.Add(key))
                    throw new BigModelException(BigModelErrorCode.IndexInvalidEntry, $"'{key}' appears twice at the top level.", path, reader.TokenStartIndex);
                Read(ref reader, path);
                if (key == "weight_map")
                {
                    weightMap = ReadWeightMap(ref reader, path);
                }
                else if (key == "metadata" && reader.TokenType == JsonTokenType.StartObject)
                {
                    using var doc = JsonDocument.ParseValue(ref reader);
                    foreach (var property in doc.RootElement.EnumerateObject())
                    {
                        metadata[property.Name] = property.Value.Clone();
                        if (property.Name == "total_size")
                        {
                            if (property.Value.ValueKind == JsonValueKind.Number && property.Value.TryGetInt64(out var t) && t >= 0) totalSize = t;
                            else if (property.Value.ValueKind == JsonValueKind.Number && property.Value.TryGetDouble(out var dt) && dt >= 0 && dt < 9e18 && Math.Floor(dt) == dt) totalSize = (long)dt;
                            else throw new BigModelException(BigModelErrorCode.IndexInvalidEntry, "metadata.total_size must be a non-negative whole number.", path);
                        }
                    }
                }
                else
                {
                    reader.Skip();
                }
            }
        }
        catch (JsonException e)
        {
            throw new BigModelException(BigModelErrorCode.IndexNotJson, $"not valid JSON: {e.Message}", path, reader.BytesConsumed, inner: e);
        }
        if (weightMap is null)
            throw new BigModelException(BigModelErrorCode.IndexMissingWeightMap, "the index has no \"weight_map\" object.", path);
        return new ShardIndex(path, totalSize, weightMap, metadata);
    }

    private static List<KeyValuePair<string, string>> ReadWeightMap(ref Utf8JsonReader reader, string path)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new BigModelException(BigModelErrorCode.IndexMissingWeightMap, "\"weight_map\" must be an object of tensor name → file name.", path, reader.TokenStartIndex);
        var map = new List<KeyValuePair<string, string>>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        while (Read(ref reader, path) != JsonTokenType.EndObject)
        {
            long at = reader.TokenStartIndex;
            var tensor = reader.GetString()!;
            if (Read(ref reader, path) != JsonTokenType.String)
                throw new BigModelException(BigModelErrorCode.IndexInvalidEntry, "the shard of each tensor must be a file name string.", path, at, tensor);
            var file = reader.GetString()!;
            if (!names.Add(tensor))
                throw new BigModelException(BigModelErrorCode.DuplicateTensorAcrossShards, "the tensor is listed twice in weight_map.", path, at, tensor);
            map.Add(new(tensor, file));
        }
        return map;
    }

    private static JsonTokenType Read(ref Utf8JsonReader reader, string path)
    {
        if (!reader.Read())
            throw new BigModelException(BigModelErrorCode.IndexNotJson, "the JSON ends early.", path, reader.BytesConsumed);
        return reader.TokenType;
    }
}
