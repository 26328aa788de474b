using System.Text;
using System.Text.Json;
using BigModel.Checkpoints;
using BigModel.Sharding;
using BigModel.Tests.Support;

namespace BigModel.Tests.Sharding;

public sealed class ShardIndexJsonTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    // Names that exercise sorting (numbers, code points beyond the BMP against U+E000) and ensure_ascii escaping.
    private static readonly KeyValuePair<string, string>[] Map =
    [
        new("model.layers.10.mlp.up_proj.weight", "model-00002-of-00002.safetensors"),
        new("model.layers.2.mlp.up_proj.weight", "model-00001-of-00002.safetensors"),
        new("lm_head.weight", "model-00002-of-00002.safetensors"),
        new("caf\u00e9.w\u00e9ight", "model-00001-of-00002.safetensors"),
        new("emoji.\U0001F600", "model-00001-of-00002.safetensors"),
        new("emoji.\uE000", "model-00001-of-00002.safetensors"),
        new("quote\"back\\slash", "model-00001-of-00002.safetensors"),
        new("ctl\n\t\u0001\u007f", "model-00002-of-00002.safetensors"),
    ];

    [PythonReferenceFact]
    public void Matches_transformers_json_dumps_byte_for_byte()
    {
        var input = _dir.Combine("input.json");
        File.WriteAllText(input, JsonSerializer.Serialize(new { total_size = 123456789012L, weight_map = Map.Select(p => new[] { p.Key, p.Value }) }));
        var output = _dir.Combine("expected.json");
        PythonReference.RunPlain("index_json.py", input, output);
        Assert.Equal(File.ReadAllBytes(output), ShardIndexJson.SerializeUtf8(123456789012L, Map));
    }

    [Fact]
    public void Has_transformers_layout()
    {
        var text = ShardIndexJson.Serialize(10, [new("b", "f2"), new("a", "f1")]);
        Assert.Equal("{\n  \"metadata\": {\n    \"total_size\": 10\n  },\n  \"weight_map\": {\n    \"a\": \"f1\",\n    \"b\": \"f2\"\n  }\n}\n", text);
    }

    [Fact]
    public void Sorts_by_code_point_and_escapes_to_ascii()
    {
        var text = ShardIndexJson.Serialize(0, Map);
        Assert.True(text.All(c => c < 128));
        Assert.True(text.IndexOf("emoji.\\ue000", StringComparison.Ordinal) < text.IndexOf("emoji.\\ud83d\\ude00", StringComparison.Ordinal));
        Assert.True(text.IndexOf("layers.10", StringComparison.Ordinal) < text.IndexOf("layers.2", StringComparison.Ordinal));
        Assert.Contains("\"ctl\\n\\t\\u0001\\u007f\"", text, StringComparison.Ordinal);
        var index = ShardIndex.Parse(Encoding.UTF8.GetBytes(text), "index.json");
        Assert.Equal(Map.Select(p => p.Key).Order(StringComparer.Ordinal), index.WeightMap.Select(p => p.Key).Order(StringComparer.Ordinal));
    }
}
