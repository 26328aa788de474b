using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using BigModel.Architectures;

namespace BigModel.DeviceMaps;

/// <summary>
/// One kind of block that must stay on one device — the counterpart of one entry of transformers'
/// <c>_no_split_modules</c> (a class name there, a name pattern here). get_balanced_memory sizes its buffer from
/// the first module of each kind, so rules are kept apart rather than merged into one predicate.
/// </summary>
public sealed class NoSplitRule
{
    private static readonly ConcurrentDictionary<string, Regex> Compiled = new(StringComparer.Ordinal);
    private readonly Func<string, bool> _matches;

    private NoSplitRule(string description, Func<string, bool> matches)
    {
        Description = description;
        _matches = matches;
    }

    /// <summary>The pattern as the user or the architecture wrote it.</summary>
    public string Description { get; }

    public bool IsMatch(string moduleName) => _matches(moduleName);

    /// <summary>A user glob such as <c>model.layers.*</c> (see <see cref="ModuleNamePattern"/>).</summary>
    public static NoSplitRule FromGlob(string glob)
    {
        var pattern = new ModuleNamePattern(glob);
        return new NoSplitRule(glob, pattern.IsMatch);
    }

    /// <summary>The family's defaults (decoder layers, BERT layers and embeddings, GPT-2 blocks), one rule per pattern.</summary>
    public static IReadOnlyList<NoSplitRule> FromArchitecture(ArchitectureSpec spec) =>
        spec.NoSplitPatterns.Select(p =>
        {
            // Whether a match exists does not depend on the scan direction; scanning from the end fails fast on
            // the many module names that do not end the way a block name does.
            var regex = Compiled.GetOrAdd(p, static s => new Regex(s, RegexOptions.CultureInvariant | RegexOptions.Compiled | RegexOptions.RightToLeft));
            return new NoSplitRule($"{spec.Family}: /{p}/", regex.IsMatch);
        }).ToList();

    /// <summary>An arbitrary predicate, for callers that know their modules better than a pattern can say.</summary>
    public static NoSplitRule FromPredicate(string description, Func<string, bool> matches) => new(description, matches);

    public override string ToString() => Description;
}
