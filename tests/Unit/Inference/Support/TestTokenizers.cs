using System.Text.Json.Nodes;

namespace BigModel.Tests.Inference.Support;

/// <summary>Small but real tokenizer.json files (the formats Hugging Face tokenizers reads) for text-path tests.</summary>
public static class TestTokenizers
{
    /// <summary>
    /// A lowercasing BERT WordPiece tokenizer: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, then <paramref name="words"/>;
    /// encoding wraps the text in [CLS] ... [SEP].
    /// </summary>
    public static string WriteWordPiece(string path, IReadOnlyList<string> words)
    {
        var vocab = new JsonObject { ["[PAD]"] = 0, ["[UNK]"] = 1, ["[CLS]"] = 2, ["[SEP]"] = 3 };
        int id = 4;
        foreach (var w in words.Distinct()) vocab[w] = id++;
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = AddedTokens(("[PAD]", 0), ("[UNK]", 1), ("[CLS]", 2), ("[SEP]", 3)),
            ["normalizer"] = new JsonObject { ["type"] = "BertNormalizer", ["clean_text"] = true, ["handle_chinese_chars"] = true, ["strip_accents"] = null, ["lowercase"] = true },
            ["pre_tokenizer"] = new JsonObject { ["type"] = "BertPreTokenizer" },
            ["post_processor"] = Template("[CLS]", 2, "[SEP]", 3),
            ["decoder"] = new JsonObject { ["type"] = "WordPiece", ["prefix"] = "##", ["cleanup"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "WordPiece", ["unk_token"] = "[UNK]", ["continuing_subword_prefix"] = "##", ["max_input_chars_per_word"] = 100, ["vocab"] = vocab,
            },
        };
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    /// <summary>
    /// A whitespace word-level tokenizer for a decoder: &lt;unk&gt;=0, &lt;s&gt;=1 (added before every text), &lt;/s&gt;=2,
    /// then <paramref name="words"/> from id 3; decoding joins words with spaces.
    /// </summary>
    public static string WriteWordLevel(string path, IReadOnlyList<string> words)
    {
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        int id = 3;
        foreach (var w in words.Distinct()) vocab[w] = id++;
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = AddedTokens(("<unk>", 0), ("<s>", 1), ("</s>", 2)),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "WhitespaceSplit" },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(Special("<s>"), Sequence("A")),
                ["pair"] = new JsonArray(Special("<s>"), Sequence("A"), Sequence("B")),
                ["special_tokens"] = new JsonObject { ["<s>"] = new JsonObject { ["id"] = "<s>", ["ids"] = new JsonArray(1), ["tokens"] = new JsonArray("<s>") } },
            },
            ["decoder"] = new JsonObject { ["type"] = "WordPiece", ["prefix"] = "##", ["cleanup"] = false },
            ["model"] = new JsonObject { ["type"] = "WordLevel", ["vocab"] = vocab, ["unk_token"] = "<unk>" },
        };
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    private static JsonArray AddedTokens(params (string Content, int Id)[] tokens) => new(tokens.Select(t => (JsonNode)new JsonObject
    {
        ["id"] = t.Id, ["content"] = t.Content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
    }).ToArray());

    private static JsonObject Template(string cls, int clsId, string sep, int sepId) => new()
    {
        ["type"] = "TemplateProcessing",
        ["single"] = new JsonArray(Special(cls), Sequence("A"), Special(sep)),
        ["pair"] = new JsonArray(Special(cls), Sequence("A"), Special(sep), Sequence("B"), Special(sep)),
        ["special_tokens"] = new JsonObject
        {
            [cls] = new JsonObject { ["id"] = cls, ["ids"] = new JsonArray(clsId), ["tokens"] = new JsonArray(cls) },
            [sep] = new JsonObject { ["id"] = sep, ["ids"] = new JsonArray(sepId), ["tokens"] = new JsonArray(sep) },
        },
    };

    private static JsonObject Special(string id) => new() { ["SpecialToken"] = new JsonObject { ["id"] = id, ["type_id"] = 0 } };

    private static JsonObject Sequence(string id) => new() { ["Sequence"] = new JsonObject { ["id"] = id, ["type_id"] = 0 } };
}
