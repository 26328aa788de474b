using System.Text.Json.Nodes;
using BigModel.Errors;
using BigModel.Fixtures.IO;

namespace BigModel.Fixtures.MiniLm;

/// <summary>
/// The tokenizer files of an uncased BERT model, made from its vocab.txt: a Hugging Face <c>tokenizer.json</c>
/// (BertNormalizer, BertPreTokenizer, WordPiece, [CLS] $A [SEP] template), <c>tokenizer_config.json</c> and
/// <c>special_tokens_map.json</c>.
/// </summary>
public static class BertTokenizerFiles
{
    public static readonly string[] SpecialTokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

    /// <summary>Reads vocab.txt: one token per line, the line number is the id. CR/LF and LF endings are both accepted.</summary>
    public static IReadOnlyList<string> ReadVocab(string path)
    {
        var text = File.ReadAllText(path);
        var lines = text.Split('\n');
        int count = lines.Length;
        if (count > 0 && lines[^1].Length == 0) count--;
        var vocab = new List<string>(count);
        for (int i = 0; i < count; i++) vocab.Add(lines[i].TrimEnd('\r'));
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var token in vocab)
            if (!seen.Add(token))
                throw new BigModelException(BigModelErrorCode.UnsupportedFormat, $"the token '{token}' appears twice in the vocabulary.", path);
        foreach (var special in SpecialTokens)
            if (!seen.Contains(special))
                throw new BigModelException(BigModelErrorCode.UnsupportedFormat, $"the vocabulary has no {special} token.", path);
        return vocab;
    }

    /// <summary>Writes vocab.txt with LF line endings, as the original BERT vocabularies have.</summary>
    public static long WriteVocab(string path, IReadOnlyList<string> vocab)
    {
        File.WriteAllText(path, string.Join("\n", vocab) + "\n", new System.Text.UTF8Encoding(false));
        return new FileInfo(path).Length;
    }

    public static JsonObject TokenizerJson(IReadOnlyList<string> vocab, int? maxLength = null)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < vocab.Count; i++) ids[vocab[i]] = i;
        int cls = ids["[CLS]"], sep = ids["[SEP]"];

        var added = new JsonArray();
        foreach (var (token, id) in SpecialTokens.Select(t => (t, ids[t])).OrderBy(p => p.Item2))
            added.Add(new JsonObject
            {
                ["id"] = id,
                ["content"] = token,
                ["single_word"] = false,
                ["lstrip"] = false,
                ["rstrip"] = false,
                ["normalized"] = false,
                ["special"] = true,
            });

        JsonObject Special(string id, int typeId) => new() { ["SpecialToken"] = new JsonObject { ["id"] = id, ["type_id"] = typeId } };
        JsonObject Sequence(string id, int typeId) => new() { ["Sequence"] = new JsonObject { ["id"] = id, ["type_id"] = typeId } };
        JsonObject SpecialEntry(string token, int id) => new() { ["id"] = token, ["ids"] = new JsonArray(id), ["tokens"] = new JsonArray(token) };

        var vocabJson = new JsonObject();
        for (int i = 0; i < vocab.Count; i++) vocabJson[vocab[i]] = i;

        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = maxLength is int max
                ? new JsonObject { ["direction"] = "Right", ["max_length"] = max, ["strategy"] = "LongestFirst", ["stride"] = 0 }
                : null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = new JsonObject
            {
                ["type"] = "BertNormalizer",
                ["clean_text"] = true,
                ["handle_chinese_chars"] = true,
                ["strip_accents"] = true,
                ["lowercase"] = true,
            },
            ["pre_tokenizer"] = new JsonObject { ["type"] = "BertPreTokenizer" },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(Special("[CLS]", 0), Sequence("A", 0), Special("[SEP]", 0)),
                ["pair"] = new JsonArray(Special("[CLS]", 0), Sequence("A", 0), Special("[SEP]", 0), Sequence("B", 1), Special("[SEP]", 1)),
                ["special_tokens"] = new JsonObject
                {
                    ["[CLS]"] = SpecialEntry("[CLS]", cls),
                    ["[SEP]"] = SpecialEntry("[SEP]", sep),
                },
            },
            ["decoder"] = new JsonObject { ["type"] = "WordPiece", ["prefix"] = "##", ["cleanup"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "WordPiece",
                ["unk_token"] = "[UNK]",
                ["continuing_subword_prefix"] = "##",
                ["max_input_chars_per_word"] = 100,
                ["vocab"] = vocabJson,
            },
        };
    }

    public static JsonObject TokenizerConfig(int modelMaxLength) => new()
    {
        ["tokenizer_class"] = "BertTokenizer",
        ["do_lower_case"] = true,
        ["do_basic_tokenize"] = true,
        ["never_split"] = null,
        ["tokenize_chinese_chars"] = true,
        ["strip_accents"] = null,
        ["clean_up_tokenization_spaces"] = true,
        ["model_max_length"] = modelMaxLength,
        ["unk_token"] = "[UNK]",
        ["sep_token"] = "[SEP]",
        ["pad_token"] = "[PAD]",
        ["cls_token"] = "[CLS]",
        ["mask_token"] = "[MASK]",
    };

    public static JsonObject SpecialTokensMap() => new()
    {
        ["unk_token"] = "[UNK]",
        ["sep_token"] = "[SEP]",
        ["pad_token"] = "[PAD]",
        ["cls_token"] = "[CLS]",
        ["mask_token"] = "[MASK]",
    };

    /// <summary>Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json into <paramref name="folder"/>.</summary>
    public static long WriteAll(string folder, IReadOnlyList<string> vocab, int modelMaxLength)
    {
        long bytes = JsonFiles.Write(Path.Combine(folder, "tokenizer.json"), TokenizerJson(vocab, modelMaxLength));
        bytes += JsonFiles.Write(Path.Combine(folder, "tokenizer_config.json"), TokenizerConfig(modelMaxLength));
        bytes += JsonFiles.Write(Path.Combine(folder, "special_tokens_map.json"), SpecialTokensMap());
        return bytes;
    }
}
