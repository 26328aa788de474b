using System.Text;
using System.Text.Json;
using BigModel.Checkpoints;
using BigModel.Errors;

namespace BigModel.Sharding;

/// <summary>
/// Records a new weight dtype in config.json the way save_pretrained does (<c>"torch_dtype": "bfloat16"</c>, or
/// <c>"dtype"</c> in transformers 4.56 and later), editing only the value text so the rest of the file stays byte for
/// byte as it was. Every <c>torch_dtype</c>/<c>dtype</c> member holding a float dtype name is updated, nested
/// sub-configs (text_config, vision_config...) included; a config without one gets <c>torch_dtype</c> added first.
/// </summary>
public static class ConfigDTypeRewriter
{
    public static byte[] Rewrite(ReadOnlySpan<byte> json, DType dtype, string? path = null)
    {
        var value = Encoding.UTF8.GetBytes("\"" + dtype.TorchName() + "\"");
        var edits = new List<(int Start, int Length)>();
        int firstObjectEnd = -1;
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 64, CommentHandling = JsonCommentHandling.Disallow });
        try
        {
            string? property = null;
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.PropertyName:
                        property = reader.GetString();
                        continue;
                    case JsonTokenType.String when property is "torch_dtype" or "dtype":
                        if (DTypes.TryParse(reader.GetString(), out var existing) && DTypeConverter.IsConvertible(existing))
                            edits.Add(((int)reader.TokenStartIndex, (int)(reader.BytesConsumed - reader.TokenStartIndex)));
                        break;
                    case JsonTokenType.StartObject when reader.CurrentDepth == 0:
                        firstObjectEnd = (int)reader.BytesConsumed;
                        break;
                }
                property = null;
            }
        }
        catch (JsonException e)
        {
            throw new BigModelException(BigModelErrorCode.ConfigNotJson, $"not valid JSON: {e.Message}", path, e.BytePositionInLine, inner: e);
        }
        if (firstObjectEnd < 0)
            throw new BigModelException(BigModelErrorCode.ConfigNotJson, "the top level must be a JSON object.", path);

        var output = new List<byte>(json.Length + 32);
        if (edits.Count == 0)
        {
            // Insert as the first member, indented like the member that follows it.
            output.AddRange(json[..firstObjectEnd]);
            int next = firstObjectEnd;
            while (next < json.Length && json[next] is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r') next++;
            var indent = json[firstObjectEnd..next];
            bool empty = next < json.Length && json[next] == (byte)'}';
            output.AddRange(indent.Length > 0 ? indent : " "u8);
            output.AddRange("\"torch_dtype\": "u8);
            output.AddRange(value);
            if (!empty) output.Add((byte)',');
            output.AddRange(json[firstObjectEnd..]);
            return output.ToArray();
        }
        int at = 0;
        foreach (var (start, length) in edits)
        {
            output.AddRange(json[at..start]);
            output.AddRange(value);
            at = start + length;
        }
        output.AddRange(json[at..]);
        return output.ToArray();
    }
}
