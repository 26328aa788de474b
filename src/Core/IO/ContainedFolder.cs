using BigModel.Errors;

namespace BigModel.IO;

/// <summary>
/// A folder that untrusted names must stay inside. The folder's own real location is resolved once, so checking
/// the hundreds of shard names of a large index costs a few system calls each.
/// </summary>
public sealed class ContainedFolder
{
    private readonly string _fullRoot;
    private readonly string _realRoot;

    public ContainedFolder(string root)
    {
        _fullRoot = Path.GetFullPath(root);
        _realRoot = PathSafety.RealPath(_fullRoot);
    }

    /// <summary>The full path of <paramref name="relative"/> inside the folder, or <paramref name="code"/> naming <paramref name="source"/>.</summary>
    public string Resolve(string relative, string source, BigModelErrorCode code = BigModelErrorCode.IndexPathEscapes)
    {
        var problem = PathSafety.LexicalProblem(relative);
        if (problem is not null)
            throw new BigModelException(code, $"'{Excerpt.Of(relative)}' {problem}; only plain names inside the checkpoint folder are allowed.", source);

        var full = Path.GetFullPath(Path.Combine(_fullRoot, relative));
        if (!PathSafety.IsUnder(_fullRoot, full))
            throw new BigModelException(code, $"'{Excerpt.Of(relative)}' resolves to {full}, outside {_fullRoot}.", source);

        // Walk only the components below the folder, as the operating system will: a symbolic link among them may
        // point anywhere, and a '..' inside a link's target climbs from wherever the walk has got to.
        if (!PathSafety.TryResolve(_realRoot, Path.GetRelativePath(_fullRoot, full), out var real))
            throw new BigModelException(code, $"'{Excerpt.Of(relative)}' goes through more than {PathSafety.MaxLinks} symbolic links (a loop?).", source);
        if (!PathSafety.IsUnder(_realRoot, real))
            throw new BigModelException(code, $"'{Excerpt.Of(relative)}' is a link to {real}, outside {_realRoot}.", source);
        return full;
    }
}
