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

    /// <summary>The path with every symbolic link on it resolved (as far as the path exists).</summary>
    public static string RealPath(string path) => RealPath(path, 0);

    private static string RealPath(string path, int depth)
    {
        var full = Path.GetFullPath(path);
        // A link loop, or an absurd chain, is treated as unresolvable: the caller then compares the unresolved path.
        if (depth > 40) return full;
        var root = Path.GetPathRoot(full) ?? "/";
        var parts = full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        var current = root;
        for (int i = 0; i < parts.Length; i++)
        {
            var next = Path.Combine(current, parts[i]);
            FileSystemInfo info = new FileInfo(next);
            if (!info.Exists && Directory.Exists(next)) info = new DirectoryInfo(next);
            string? target;
            try { target = info.LinkTarget; }
            catch (IOException) { target = null; }
            if (target is not null)
            {
                var resolved = Path.IsPathRooted(target) ? target : Path.Combine(current, target);
                return RealPath(Path.Combine([resolved, .. parts[(i + 1)..]]), depth + 1);
            }
            current = next;
        }
        return current;
    }

    internal static string Show(string s) => s.Length <= 120 ? s.Replace("\0", "\\0") : s[..120] + "…";
}
