using System.Globalization;
using System.Text;

namespace BigModel.Tests.Fixtures;

/// <summary>
/// An uncased BERT tokenizer written from the description of the original BertTokenizer (BasicTokenizer +
/// WordpieceTokenizer), reading vocab.txt directly. It shares nothing with tokenizer.json, so agreement between
/// the two shows that the generated tokenizer.json describes the same tokenizer.
/// </summary>
public sealed class ReferenceWordPiece
{
    private readonly Dictionary<string, int> _vocab = new(StringComparer.Ordinal);

    public ReferenceWordPiece(string vocabPath)
    {
        int id = 0;
        foreach (var line in File.ReadLines(vocabPath)) _vocab[line.TrimEnd('\r')] = id++;
    }

    public int Id(string token) => _vocab[token];

    /// <summary>[CLS] tokens [SEP], as ids.</summary>
    public int[] Encode(string text) => [Id("[CLS]"), .. Tokenize(text).Select(Id), Id("[SEP]")];

    public IEnumerable<string> Tokenize(string text)
    {
        foreach (var word in BasicTokens(text))
            foreach (var piece in WordPieces(word))
                yield return piece;
    }

    private static List<string> BasicTokens(string text)
    {
        var cleaned = new StringBuilder();
        foreach (var rune in text.EnumerateRunes())
        {
            int cp = rune.Value;
            if (cp == 0 || cp == 0xFFFD || IsControl(rune)) continue;
            if (IsWhitespace(rune)) cleaned.Append(' ');
            else if (IsCjk(cp)) cleaned.Append(' ').Append(rune.ToString()).Append(' ');
            else cleaned.Append(rune.ToString());
        }
        var tokens = new List<string>();
        foreach (var raw in cleaned.ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            var lowered = raw.ToLowerInvariant().Normalize(NormalizationForm.FormD);
            var current = new StringBuilder();
            foreach (var rune in lowered.EnumerateRunes())
            {
                if (Rune.GetUnicodeCategory(rune) == UnicodeCategory.NonSpacingMark) continue;
                if (IsPunctuation(rune))
                {
                    if (current.Length > 0) tokens.Add(current.ToString());
                    current.Clear();
                    tokens.Add(rune.ToString());
                }
                else
                {
                    current.Append(rune.ToString());
                }
            }
            if (current.Length > 0) tokens.Add(current.ToString());
        }
        return tokens;
    }

    private IEnumerable<string> WordPieces(string word)
    {
        var runes = word.EnumerateRunes().Select(r => r.ToString()).ToArray();
        if (runes.Length > 100) return ["[UNK]"];
        var pieces = new List<string>();
        int start = 0;
        while (start < runes.Length)
        {
            string? found = null;
            int end = runes.Length;
            for (; end > start; end--)
            {
                var candidate = string.Concat(runes[start..end]);
                if (start > 0) candidate = "##" + candidate;
                if (_vocab.ContainsKey(candidate))
                {
                    found = candidate;
                    break;
                }
            }
            if (found is null) return ["[UNK]"];
            pieces.Add(found);
            start = end;
        }
        return pieces;
    }

    private static bool IsWhitespace(Rune r) =>
        r.Value is ' ' or '\t' or '\n' or '\r' || Rune.GetUnicodeCategory(r) == UnicodeCategory.SpaceSeparator;

    private static bool IsControl(Rune r)
    {
        if (r.Value is '\t' or '\n' or '\r') return false;
        return Rune.GetUnicodeCategory(r) is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate
            or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned;
    }

    private static bool IsPunctuation(Rune r)
    {
        int cp = r.Value;
        if (cp is >= 33 and <= 47 or >= 58 and <= 64 or >= 91 and <= 96 or >= 123 and <= 126) return true;
        return Rune.GetUnicodeCategory(r) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
    }

    private static bool IsCjk(int cp) =>
        cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF or >= 0x2A700 and <= 0x2B73F
            or >= 0x2B740 and <= 0x2B81F or >= 0x2B820 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;
}
