using System.Globalization;
using BigModel.Errors;

namespace BigModel.Fixtures.Cli;

/// <summary>
/// <c>--name value</c> options and <c>--flag</c> switches after a subcommand. Every option must be consumed, so a
/// misspelt one is an error instead of being silently ignored.
/// </summary>
public sealed class Arguments
{
    private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public Arguments(IEnumerable<string> args, IReadOnlySet<string> flags)
    {
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            var a = list[i];
            if (!a.StartsWith("--", StringComparison.Ordinal) || a.Length == 2)
                throw Invalid($"unexpected argument '{a}'; options are written --name value.");
            var key = a[2..];
            string? value = null;
            int eq = key.IndexOf('=');
            if (eq >= 0)
            {
                value = key[(eq + 1)..];
                key = key[..eq];
            }
            else if (!flags.Contains(key))
            {
                if (i + 1 >= list.Count) throw Invalid($"--{key} needs a value.");
                value = list[++i];
            }
            if (!_values.TryAdd(key, value)) throw Invalid($"--{key} is given twice.");
        }
    }

    public bool Flag(string name)
    {
        _used.Add(name);
        if (!_values.TryGetValue(name, out var v)) return false;
        if (v is null || v == "1" || v.Equals("true", StringComparison.OrdinalIgnoreCase)) return true;
        if (v == "0" || v.Equals("false", StringComparison.OrdinalIgnoreCase)) return false;
        throw Invalid($"--{name} is a switch; use --{name} or --{name}=false.");
    }

    public string? String(string name)
    {
        _used.Add(name);
        return _values.TryGetValue(name, out var v) ? v : null;
    }

    public string Required(string name) => String(name) ?? throw Invalid($"--{name} is required.");

    public int Int(string name, int fallback, int min = 1)
    {
        var text = String(name);
        if (text is null) return fallback;
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) || v < min)
            throw Invalid($"--{name} must be a whole number ≥ {min}, not '{text}'.");
        return v;
    }

    public ulong ULong(string name, ulong fallback)
    {
        var text = String(name);
        if (text is null) return fallback;
        if (!ulong.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v))
            throw Invalid($"--{name} must be a non-negative whole number, not '{text}'.");
        return v;
    }

    public double Double(string name, double fallback)
    {
        var text = String(name);
        if (text is null) return fallback;
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || !double.IsFinite(v) || v < 0)
            throw Invalid($"--{name} must be a finite non-negative number, not '{text}'.");
        return v;
    }

    /// <summary>Fails on any option no one asked for.</summary>
    public void EnsureAllUsed()
    {
        var unknown = _values.Keys.Where(k => !_used.Contains(k)).ToList();
        if (unknown.Count > 0) throw Invalid($"unknown option(s): {string.Join(", ", unknown.Select(k => "--" + k))}.");
    }

    private static BigModelException Invalid(string message) => new(BigModelErrorCode.InvalidArgument, message);
}
