using BigModel.Errors;

namespace BigModel.Inference;

/// <summary>
/// Answers "where does this tensor live" for a placement with Accelerate's semantics: a key covers the module of
/// that name and everything below it, the longest matching key wins, and <c>""</c> covers the whole model.
/// </summary>
internal sealed class PlacementResolver
{
    private readonly (string Key, WeightLocation Location)[] _entries;

    public PlacementResolver(IReadOnlyDictionary<string, string> placement)
    {
        _entries = placement
            .Select(p => (Key: p.Key ?? "", Location: WeightLocation.Parse(p.Value, p.Key)))
            .OrderByDescending(p => p.Key.Length)
            .ToArray();
    }

    /// <summary>Every location the placement mentions.</summary>
    public IEnumerable<WeightLocation> Locations => _entries.Select(e => e.Location);

    /// <summary>The location of <paramref name="name"/> (a tensor or module name), or null when no key covers it.</summary>
    public WeightLocation? Find(string name)
    {
        foreach (var (key, location) in _entries)
            if (Covers(key, name)) return location;
        return null;
    }

    public WeightLocation Require(string name, string? file = null) => Find(name)
        ?? throw new BigModelException(BigModelErrorCode.InvalidDeviceMap,
            $"the placement does not cover '{name}'; add an entry for it or for a module that contains it (\"\" covers the whole model).",
            file, tensor: name);

    internal static bool Covers(string key, string name) =>
        key.Length == 0
        || (name.Length == key.Length && string.Equals(name, key, StringComparison.Ordinal))
        || (name.Length > key.Length && name[key.Length] == '.' && name.StartsWith(key, StringComparison.Ordinal));
}
