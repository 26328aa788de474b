using System.Text;
using System.Text.RegularExpressions;
using BigModel.Errors;

namespace BigModel.DeviceMaps;

/// <summary>
/// A glob over dotted module names: <c>*</c> matches within one name segment, <c>**</c> across segments,
/// <c>?</c> one character of a segment, <c>[0-9]</c> a character class. <c>model.layers.*</c> matches every decoder
/// layer and none of their submodules. Matching is case-sensitive and covers the whole name.
/// </summary>
public sealed class ModuleNamePattern
{
    private const int MaxPatternLength = 1024;
    private readonly Regex _regex;

    public ModuleNamePattern(string pattern)
    {
        if (string.IsNullOrWhiteSpace(pattern))
            throw new BigModelException(BigModelErrorCode.DeviceMapInvalidPattern, "a module name pattern is empty.");
        if (pattern.Length > MaxPatternLength)
            throw new BigModelException(BigModelErrorCode.DeviceMapInvalidPattern, $"the module name pattern is {pattern.Length} characters long; the limit is {MaxPatternLength}.");
        Pattern = pattern;
        try
        {
            _regex = new Regex(ToRegex(pattern), RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
        }
        catch (ArgumentException e)
        {
            throw new BigModelException(BigModelErrorCode.DeviceMapInvalidPattern, $"'{pattern}' is not a valid pattern: {e.Message}", inner: e);
        }
    }

    public string Pattern { get; }

    public bool IsMatch(string moduleName)
    {
        try
        {
            return _regex.IsMatch(moduleName);
        }
        catch (RegexMatchTimeoutException e)
        {
            throw new BigModelException(BigModelErrorCode.DeviceMapInvalidPattern, $"'{Pattern}' took too long to match '{moduleName}'; simplify the pattern.", inner: e);
        }
    }

    public override string ToString() => Pattern;

    private static string ToRegex(string glob)
    {
        var sb = new StringBuilder("^");
        for (int i = 0; i < glob.Length; i++)
        {
            char c = glob[i];
            switch (c)
            {
                case '*' when i + 1 < glob.Length && glob[i + 1] == '*':
                    sb.Append(".*");
                    i++;
                    break;
                case '*':
                    sb.Append("[^.]*");
                    break;
                case '?':
                    sb.Append("[^.]");
                    break;
                case '[':
                {
                    // The class holds at least one character, so its ']' comes two places on at the earliest.
                    int close = i + 2 < glob.Length ? glob.IndexOf(']', i + 2) : -1;
                    if (close < 0)
                        throw new BigModelException(BigModelErrorCode.DeviceMapInvalidPattern, $"'{glob}': the '[' at position {i} is never closed.");
                    var body = glob[(i + 1)..close];
                    bool negate = body.StartsWith('!') || body.StartsWith('^');
                    if (negate) body = body[1..];
                    if (body.Length == 0)
                        throw new BigModelException(BigModelErrorCode.DeviceMapInvalidPattern, $"'{glob}': the character class at position {i} is empty.");
                    sb.Append(negate ? "[^" : "[");
                    foreach (var b in body) sb.Append(b is '\\' or ']' or '[' or '^' ? "\\" + b : b.ToString());
                    sb.Append(']');
                    i = close;
                    break;
                }
                default:
                    sb.Append(Regex.Escape(c.ToString()));
                    break;
            }
        }
        return sb.Append('$').ToString();
    }
}
