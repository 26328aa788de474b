using System.Management.Automation;
using BigModel.Errors;

namespace BigModel.Cmdlets.Infrastructure;

/// <summary>
/// What every BigModel cmdlet shares: PowerShell-relative path resolution (the process's current directory is
/// not PowerShell's location) and BigModel errors turned into ErrorRecords with stable ids and categories.
/// </summary>
public abstract class BigModelCmdlet : PSCmdlet
{
    /// <summary>Resolves a path the user typed (relative, ~, PSDrive, wildcard) to file-system paths.</summary>
    protected IReadOnlyList<string> ResolvePaths(string path)
    {
        try
        {
            var resolved = SessionState.Path.GetResolvedProviderPathFromPSPath(path, out var provider);
            if (provider.Name != "FileSystem")
                throw new BigModelException(BigModelErrorCode.PathNotFound, $"'{path}' is not a file-system path (provider {provider.Name}).", path);
            return resolved.ToList();
        }
        catch (ItemNotFoundException e)
        {
            throw new BigModelException(BigModelErrorCode.PathNotFound, "no such file or folder.", path, inner: e);
        }
        catch (System.Management.Automation.DriveNotFoundException e)
        {
            throw new BigModelException(BigModelErrorCode.PathNotFound, e.Message, path, inner: e);
        }
    }

    /// <summary>
    /// Resolves a path taken literally, as -LiteralPath does: '[', ']', '*' and '?' are characters of the name. The path
    /// must exist (a file or folder of the file system).
    /// </summary>
    protected string ResolveLiteralPath(string path)
    {
        string resolved;
        try
        {
            resolved = SessionState.Path.GetUnresolvedProviderPathFromPSPath(path, out var provider, out _);
            if (provider.Name != "FileSystem")
                throw new BigModelException(BigModelErrorCode.PathNotFound, $"'{path}' is not a file-system path (provider {provider.Name}).", path);
        }
        catch (Exception e) when (e is System.Management.Automation.DriveNotFoundException or ProviderNotFoundException or ItemNotFoundException)
        {
            throw new BigModelException(BigModelErrorCode.PathNotFound, e.Message, path, inner: e);
        }
        if (!File.Exists(resolved) && !Directory.Exists(resolved))
            throw new BigModelException(BigModelErrorCode.PathNotFound, "no such file or folder.", resolved);
        return resolved;
    }

    /// <summary>The one file-system path a -Path or -LiteralPath input names; a wildcard matching several is an error.</summary>
    protected string SingleInput(string input, bool literal)
    {
        var paths = ResolveInput(input, literal);
        return paths.Count == 1 ? paths[0]
            : throw new BigModelException(BigModelErrorCode.AmbiguousCheckpoint, $"'{input}' matches {paths.Count} paths; give one checkpoint.", input);
    }

    /// <summary>The file-system paths of one -Path (wildcards expanded) or -LiteralPath input.</summary>
    protected IReadOnlyList<string> ResolveInput(string input, bool literal) => literal ? [ResolveLiteralPath(input)] : ResolvePaths(input);

    /// <summary>PowerShell hands over values wrapped in PSObject; Core takes the values themselves.</summary>
    protected static object? Unwrap(object? value) => value is PSObject wrapped ? wrapped.BaseObject : value;

    /// <summary>Resolves a path that may not exist yet (a destination).</summary>
    protected string ResolveNewPath(string path) => SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);

    /// <summary>Writes a non-terminating error for <paramref name="e"/>.</summary>
    protected void WriteBigModelError(BigModelException e, object? target = null) => WriteError(ErrorRecords.From(e, target));

    /// <summary>Stops the pipeline with <paramref name="e"/>.</summary>
    protected void ThrowBigModelError(BigModelException e, object? target = null) => ThrowTerminatingError(ErrorRecords.From(e, target));
}
