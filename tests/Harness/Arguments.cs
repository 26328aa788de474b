using BigModel.IO;

namespace BigModel.Harness;

/// <summary>Positional arguments and --name value / --flag options.</summary>
internal sealed class Arguments
{
    private readonly List<string> _positional = [];
    private readonly Dictionary<string, string?> _options = new(StringComparer.Ordinal);

    public Arguments(IEnumerable<string> args)
    {
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i].StartsWith("--", StringComparison.Ordinal))
            {
                var name = list[i][2..];
                string? value = i + 1 < list.Count && !list[i + 1].StartsWith("--", StringComparison.Ordinal) ? list[++i] : null;
                _options[name] = value;
            }
            else
            {
                _positional.Add(list[i]);
            }
        }
    }

    public string Positional(int index, string what) =>
        index < _positional.Count ? _positional[index] : throw new UsageException($"missing {what}.");

    public bool Flag(string name) => _options.ContainsKey(name);

    public string? Option(string name) => _options.GetValueOrDefault(name);

    public string Required(string name) => Option(name) ?? throw new UsageException($"missing --{name}.");

    public long Size(string name, long fallback) => Option(name) is { } text ? ByteSize.Parse(text, "--" + name) : fallback;

    public int Int(string name, int fallback) =>
        Option(name) is { } text ? int.TryParse(text, out var n) ? n : throw new UsageException($"--{name} must be a whole number.") : fallback;
}
