using BigModel.Errors;

namespace BigModel.IO;

/// <summary>
/// Checks that a file name taken from untrusted content (an index's weight_map, a zip entry) stays inside the
/// folder it is relative to: no absolute paths, drive letters, UNC names, ".." segments, NUL characters, or
/// symbolic links whose target leaves the folder.
/// </summary>
public static class PathSafety
{
    /// <summary>
    /// Resolves <paramref name="relative"/> against <paramref name="root"/> or throws <paramref name="code"/>
    /// naming <paramref name="source"/> (the file that contained the name).
    /// </summary>
    public static string ResolveInside(string root, string relative, string source, BigModelErrorCode code = BigModelErrorCode.IndexPathEscapes) =>
        new ContainedFolder(root).Resolve(relative, source, code);

    /// <summary>Why a relative name is unacceptable, or null when it is fine.</summary>
    public static string? LexicalProblem(string relative)
    {
        if (string.IsNullOrEmpty(relative)) return "is empty";
        if (relative.Contains('\0')) return "contains a NUL character";
        if (relative.StartsWith('/') || relative.StartsWith('\\')) return "is an absolute path";
        if (relative.Length >= 2 && relative[1] == ':' && char.IsAsciiLetter(relative[0])) return "starts with a drive letter";
        if (relative.Contains(':')) return "contains ':'";
        foreach (var segment in relative.Split('/', '\\'))
        {
            if (segment == "..") return "climbs out of its folder with '..'";
        }
        return null;
    }

    /// <summary>True when <paramref name="path"/> is <paramref name="folder"/> or lies below it.</summary>
    public static bool IsUnder(string folder, string path)
    {
        var f = Path.TrimEndingDirectorySeparator(folder);
        var comparison = OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        if (string.Equals(f, Path.TrimEndingDirectorySeparator(path), comparison)) return true;
        return path.StartsWith(f + Path.DirectorySeparatorChar, comparison)
            || path.StartsWith(f + Path.AltDirectorySeparatorChar, comparison);
    }

    /// <summary>Most symbolic links followed while resolving one path, as Linux's MAXSYMLINKS.</summary>
    public const int MaxLinks = 40;

    /// <summary>
    /// The physical path <paramref name="path"/> names, with every symbolic link on it resolved (as far as the path
    /// exists), the way the operating system walks it: each '..' climbs from the folder reached so far, so after a link
    /// it leaves the link's target, not the link. A loop, or more than <see cref="MaxLinks"/> links, is an error.
    /// </summary>
    public static string RealPath(string path)
    {
        // Not Path.GetFullPath: it removes '..' lexically, before the links it follows are known.
        var full = Path.IsPathRooted(path) ? path : Path.Join(Directory.GetCurrentDirectory(), path);
        var root = Path.GetPathRoot(full)!;
        if (!TryResolve(root, full[root.Length..], out var real))
            throw TooManyLinks(path);
        return real;
    }

    internal static BigModelException TooManyLinks(string path) =>
        new(BigModelErrorCode.IoFailure, $"more than {MaxLinks} symbolic links (a loop?) on the way to this path.", path);

    /// <summary>
    /// Walks <paramref name="relative"/> from <paramref name="physical"/>, a folder whose own links are already
    /// resolved. False when the walk meets a loop or more than <see cref="MaxLinks"/> links.
    /// </summary>
    internal static bool TryResolve(string physical, string relative, out string real)
    {
        var pending = new Stack<string>();
        Push(pending, relative);
        var current = physical;
        int links = 0;
        real = physical;
        while (pending.Count > 0)
        {
            var segment = pending.Pop();
            if (segment is "" or ".") continue;
            if (segment == "..")
            {
                current = Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(current)) is { Length: > 0 } parent ? parent : current;
                continue;
            }
            var next = Path.Join(current, segment);
            var target = LinkTarget(next);
            if (target is null)
            {
                current = next;
                continue;
            }
            if (++links > MaxLinks) return false;
            // A link's target replaces the link: it continues from the link's folder, or from the root it names.
            if (Path.IsPathRooted(target))
            {
                current = Path.GetPathRoot(target)!;
                target = target[current.Length..];
            }
            Push(pending, target);
        }
        real = current;
        return true;
    }

    private static void Push(Stack<string> pending, string path)
    {
        var segments = path.Split([Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar], StringSplitOptions.RemoveEmptyEntries);
        for (int i = segments.Length - 1; i >= 0; i--) pending.Push(segments[i]);
    }

    private static string? LinkTarget(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // What cannot be inspected cannot be opened either: it is taken as it is named.
            return null;
        }
    }
}
