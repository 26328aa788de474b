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
        CompletionSources.Complete(CompletionSources.TensorNames(fakeBoundParameters), wordToComplete);
}

/// <summary>Candidate lists for argument completers, computed from the parameters already typed.</summary>
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

    public static IEnumerable<CompletionResult> Complete(IEnumerable<string> candidates, string word)
    {
        var pattern = new WildcardPattern(word.Trim('\'', '"') + "*", WildcardOptions.IgnoreCase);
        foreach (var c in candidates)
            if (pattern.IsMatch(c))
                yield return new CompletionResult(c.Contains(' ') || c.Contains('*') ? $"'{c}'" : c, c, CompletionResultType.ParameterValue, c);
    }

    private static Checkpoint? OpenBoundCheckpoint(IDictionary bound)
    {
        var value = bound["Path"] ?? bound["Checkpoint"];
        if (value is Checkpoint c) return c;
        if (value is PSObject { BaseObject: Checkpoint pc }) return pc;
        var path = value switch
        {
            string s => s,
            string[] { Length: > 0 } a => a[0],
            object[] { Length: > 0 } o => o[0]?.ToString(),
            _ => null,
        };
        if (string.IsNullOrEmpty(path)) return null;
        try
        {
            return Checkpoint.Open(path);
        }
        catch (Errors.BigModelException)
        {
            // Completion must never throw: no candidates for an unreadable checkpoint.
            return null;
        }
    }
}
