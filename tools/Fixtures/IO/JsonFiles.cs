using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace BigModel.Fixtures.IO;

/// <summary>Writes JSON the way Hugging Face tools do: two-space indentation, UTF-8 kept readable, a final newline.</summary>
public static class JsonFiles
{
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static long Write(string path, JsonNode node)
    {
        var text = node.ToJsonString(Options) + "\n";
        File.WriteAllText(path, text, new System.Text.UTF8Encoding(false));
        return new FileInfo(path).Length;
    }
}
