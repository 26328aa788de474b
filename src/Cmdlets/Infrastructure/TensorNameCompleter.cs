using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using BigModel.Checkpoints;

namespace BigModel.Cmdlets.Infrastructure;

/// <summary>Completes tensor names of the checkpoint given to -Path on the same command line.</summary>
public sealed class TensorNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters) =>
        CompletionSources.Complete(() => CompletionSources.TensorNames(fakeBoundParameters), wordToComplete);
}

/// <summary>
/// Candidate lists for argument completers, computed from the parameters already typed. Completion runs on every Tab,
/// inside the user's session: it must never throw, and relative paths are relative to the session's location.
/// </summary>
internal static class CompletionSources
{
    public static IEnumerable<string> TensorNames(IDictionary bound)
    {
        var checkpoint = OpenBoundCheckpoint(bound);
        return checkpoint is null ? [] : checkpoint.Tensors.Select(t => t.Name);
    }

    /// <summary>Module names (every dotted prefix of a tensor name), in forward order.</summary>
    public static IEnumerable<string> ModuleNames(IDictionary bound)
    {
        var checkpoint = OpenBoundCheckpoint(bound);
        if (checkpoint is null) return [];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var modules = new List<string>();
        foreach (var t in checkpoint.Tensors)
            for (int i = t.Name.IndexOf('.'); i >= 0; i = t.Name.IndexOf('.', i + 1))
                if (seen.Add(t.Name[..i])) modules.Add(t.Name[..i]);
        return modules;
    }

    /// <summary>
    /// The candidates starting with what was typed (taken literally: '[' or '*' in a tensor name is not a wildcard),
    /// computed and matched eagerly so that any failure ends in no candidates rather than an exception.
    /// </summary>
    public static IEnumerable<CompletionResult> Complete(Func<IEnumerable<string>> candidates, string? word)
    {
        try
        {
            var typed = (word ?? "").Trim('\'', '"');
            var pattern = new WildcardPattern(WildcardPattern.Escape(typed) + "*", WildcardOptions.IgnoreCase);
            var results = new List<CompletionResult>();
            foreach (var c in candidates())
                if (pattern.IsMatch(c))
                    results.Add(new CompletionResult(Quote(c), c, CompletionResultType.ParameterValue, c));
            return results;
        }
        catch (Exception)
        {
            // Completion must never throw: whatever went wrong, there is simply nothing to offer.
            return [];
        }
    }

    /// <summary>Names with characters PowerShell would read as syntax are inserted in single quotes.</summary>
    private static string Quote(string name)
    {
        foreach (var c in name)
            if (!(char.IsLetterOrDigit(c) || c is '.' or '_' or '-' or '/' or ':'))
                return "'" + name.Replace("'", "''", StringComparison.Ordinal) + "'";
        return name;
    }

    private static Checkpoint? OpenBoundCheckpoint(IDictionary bound)
    {
        var value = bound["Path"] ?? bound["LiteralPath"] ?? bound["Checkpoint"];
        if (value is PSObject wrapped) value = wrapped.BaseObject;
        if (value is Checkpoint c) return c;
        var path = value switch
        {
            string s => s,
            string[] { Length: > 0 } a => a[0],
            object[] { Length: > 0 } o => (o[0] is PSObject p ? p.BaseObject : o[0])?.ToString(),
            _ => null,
        };
        if (string.IsNullOrEmpty(path)) return null;
        return Checkpoint.Open(SessionPath(path, literal: bound["LiteralPath"] is not null));
    }

    /// <summary>
    /// <paramref name="path"/> resolved as the cmdlet will resolve it: against the session's current location (not the
    /// process's directory), with ~ and drives, and for -Path the first wildcard match. Completion runs inside a
    /// pipeline of the session, so the session is asked through a nested command.
    /// </summary>
    private static string SessionPath(string path, bool literal)
    {
        using var ps = PowerShell.Create(RunspaceMode.CurrentRunspace);
        ps.AddCommand(@"Microsoft.PowerShell.Management\Resolve-Path").AddParameter(literal ? "LiteralPath" : "Path", path);
        var resolved = ps.Invoke().Select(r => r.BaseObject).OfType<PathInfo>().FirstOrDefault(p => p.Provider.Name == "FileSystem");
        return resolved?.ProviderPath ?? throw new ItemNotFoundException(path);
    }
}
