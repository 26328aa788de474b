using System.Globalization;
using System.Text;

namespace BigModel.IO;

/// <summary>
/// Text taken from untrusted input (names, paths, JSON values) made fit for an error message: control characters
/// written as <c>\xNN</c>, so a name cannot forge lines of a log, and anything longer than a limit cut with '…'.
/// </summary>
public static class Excerpt
{
    public static string Of(string text, int maxLength = 120)
    {
        bool clean = text.Length <= maxLength;
        foreach (var c in text)
        {
            if (!clean) break;
            if (char.IsControl(c)) clean = false;
        }
        if (clean) return text;
        var sb = new StringBuilder(Math.Min(text.Length, maxLength) + 8);
        foreach (var c in text)
        {
            if (sb.Length >= maxLength)
            {
                sb.Append('…');
                break;
            }
            if (char.IsControl(c)) sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
            else sb.Append(c);
        }
        return sb.ToString();
    }
}
