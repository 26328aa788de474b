using System.Globalization;
using System.Text;

namespace BigModel.Sharding;

/// <summary>
/// Writes <c>model.safetensors.index.json</c> byte for byte as transformers' save_pretrained does:
/// <c>json.dumps({"metadata": {"total_size": N}, "weight_map": {...}}, indent=2, sort_keys=True) + "\n"</c>, which
/// means keys sorted by code point, two-space indentation, <c>": "</c> after keys, and every character outside
/// printable ASCII escaped as <c>\uXXXX</c> (Python's ensure_ascii).
/// </summary>
public static class ShardIndexJson
{
    public const string FileName = "model.safetensors.index.json";

    public static string Serialize(long totalSize, IEnumerable<KeyValuePair<string, string>> weightMap)
    {
        var entries = weightMap.ToList();
        entries.Sort((a, b) => CodePointComparer.Instance.Compare(a.Key, b.Key));
        var json = new StringBuilder(64 + entries.Count * 80);
        json.Append("{\n  \"metadata\": {\n    \"total_size\": ")
            .Append(totalSize.ToString(CultureInfo.InvariantCulture))
            .Append("\n  },\n  \"weight_map\": {");
        for (int i = 0; i < entries.Count; i++)
        {
            json.Append(i == 0 ? "\n    " : ",\n    ");
            AppendString(json, entries[i].Key);
            json.Append(": ");
            AppendString(json, entries[i].Value);
        }
        json.Append(entries.Count == 0 ? "}" : "\n  }");
        json.Append("\n}\n");
        return json.ToString();
    }

    public static byte[] SerializeUtf8(long totalSize, IEnumerable<KeyValuePair<string, string>> weightMap) =>
        Encoding.UTF8.GetBytes(Serialize(totalSize, weightMap));

    // Python's json encoder with ensure_ascii: only printable ASCII passes through; UTF-16 units are escaped one by one,
    // which writes characters beyond the BMP as their surrogate pair, as Python does.
    private static void AppendString(StringBuilder json, string value)
    {
        json.Append('"');
        foreach (var c in value)
        {
            switch (c)
            {
                case '"': json.Append("\\\""); break;
                case '\\': json.Append("\\\\"); break;
                case '\n': json.Append("\\n"); break;
                case '\r': json.Append("\\r"); break;
                case '\t': json.Append("\\t"); break;
                case '\b': json.Append("\\b"); break;
                case '\f': json.Append("\\f"); break;
                default:
                    if (c < ' ' || c > '~') json.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else json.Append(c);
                    break;
            }
        }
        json.Append('"');
    }

    /// <summary>Orders strings by Unicode code point, as Python compares str (ordinal UTF-16 order differs above U+D7FF).</summary>
    internal sealed class CodePointComparer : IComparer<string>
    {
        public static readonly CodePointComparer Instance = new();

        public int Compare(string? x, string? y)
        {
            if (ReferenceEquals(x, y)) return 0;
            if (x is null) return -1;
            if (y is null) return 1;
            int i = 0, j = 0;
            while (i < x.Length && j < y.Length)
            {
                int a = NextCodePoint(x, ref i);
                int b = NextCodePoint(y, ref j);
                if (a != b) return a.CompareTo(b);
            }
            return (x.Length - i).CompareTo(y.Length - j);
        }

        private static int NextCodePoint(string s, ref int index)
        {
            char c = s[index];
            if (char.IsHighSurrogate(c) && index + 1 < s.Length && char.IsLowSurrogate(s[index + 1]))
            {
                int codePoint = char.ConvertToUtf32(c, s[index + 1]);
                index += 2;
                return codePoint;
            }
            index++;
            return c;
        }
    }
}
