using System.Security.Cryptography;
using BigModel.Errors;

namespace BigModel.IO;

/// <summary>
/// Writes a folder so that it appears at its destination complete or not at all. Content goes to a staging folder
/// beside the destination (same file system, so the final step is a rename); <see cref="Commit"/> moves it into place
/// atomically, swapping out an existing destination only when replacing was allowed. An exclusive lock file beside
/// the destination keeps two writers apart. Anything a killed run left behind (staging folders, a destination moved
/// aside) carries a recognisable name and is cleaned up, or put back, by the next writer of the same destination.
/// </summary>
/// <remarks>
/// Names beside a destination <c>out</c>: <c>.out.bigmodel-tmp-XXXXXXXXXXXX</c> (staging),
/// <c>.out.bigmodel-old-XXXXXXXXXXXX</c> (the previous destination during a non-atomic replace) and
/// <c>.out.bigmodel-lock</c> (held while a writer runs, removed when it ends).
/// </remarks>
public sealed class StagedDirectory : IDisposable
{
    public const string StagingMarker = ".bigmodel-tmp-";
    public const string SetAsideMarker = ".bigmodel-old-";
    public const string LockSuffix = ".bigmodel-lock";

    private readonly FileStream _lock;
    private readonly bool _replace;
    private bool _committed;
    private bool _disposed;

    private StagedDirectory(string destination, string parent, string name, FileStream @lock, bool replace)
    {
        Destination = destination;
        Parent = parent;
        Name = name;
        _lock = @lock;
        _replace = replace;
        StagingPath = Path.Combine(parent, "." + name + StagingMarker + Token());
    }

    /// <summary>The final location, absolute.</summary>
    public string Destination { get; }

    /// <summary>Where to write the content until <see cref="Commit"/>.</summary>
    public string StagingPath { get; }

    /// <summary>The folder holding the destination.</summary>
    public string Parent { get; }

    /// <summary>The destination's own name.</summary>
    public string Name { get; }

    /// <summary>True when a destination with content existed when writing began (so committing replaces it).</summary>
    public bool ReplacesExisting { get; private set; }

    /// <summary>Leftovers from earlier runs that were removed, or put back, when this one began.</summary>
    public IReadOnlyList<string> Recovered { get; private set; } = [];

    public bool IsCommitted => _committed;

    /// <summary>
    /// Takes the destination's lock, tidies what interrupted runs left, checks the destination may be written
    /// (absent, an empty folder, or <paramref name="replace"/>), and creates the staging folder.
    /// </summary>
    public static StagedDirectory Begin(string destination, bool replace)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(destination));
        var name = Path.GetFileName(full);
        var parent = Path.GetDirectoryName(full);
        if (string.IsNullOrEmpty(name) || parent is null)
            throw new BigModelException(BigModelErrorCode.InvalidArgument, "the destination must be a folder below a parent folder, not a root.", full);
        try
        {
            Directory.CreateDirectory(parent);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoError(parent, e);
        }
        var @lock = DestinationLock.Acquire(Path.Combine(parent, "." + name + LockSuffix), full);
        var staged = new StagedDirectory(full, parent, name, @lock, replace);
        try
        {
            staged.Recovered = staged.RecoverLeftovers();
            staged.ReplacesExisting = HasContent(full);
            if (staged.ReplacesExisting && !replace)
                throw new BigModelException(BigModelErrorCode.DestinationExists,
                    "the destination already exists; choose another folder or allow replacing it (-Force).", full);
            Directory.CreateDirectory(staged.StagingPath);
            return staged;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            staged.Dispose();
            throw IoError(full, e);
        }
        catch
        {
            staged.Dispose();
            throw;
        }
    }

    /// <summary>Paths beside <paramref name="destination"/> that interrupted writers left (staging and set-aside folders).</summary>
    public static IReadOnlyList<string> FindLeftovers(string destination)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(destination));
        var parent = Path.GetDirectoryName(full);
        var name = Path.GetFileName(full);
        if (parent is null || !Directory.Exists(parent)) return [];
        return Leftovers(parent, name).Select(l => l.Path).ToList();
    }

    /// <summary>
    /// Moves the staging folder to the destination. On Linux an existing destination is swapped out in one step
    /// (renameat2 RENAME_EXCHANGE); elsewhere it is renamed aside first, and put back if the second rename fails.
    /// </summary>
    public void Commit()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_committed) throw new InvalidOperationException("already committed.");
        try
        {
            FileSystemNative.FlushDirectory(StagingPath);
            if (Exists(Destination))
            {
                if (HasContent(Destination) && !_replace)
                    throw new BigModelException(BigModelErrorCode.DestinationExists,
                        "the destination appeared while writing; it was left untouched.", Destination);
                ReplaceExisting();
            }
            else
            {
                MoveIntoPlace();
            }
            _committed = true;
            FileSystemNative.FlushDirectory(Parent);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoError(Destination, e);
        }
    }

    private void MoveIntoPlace()
    {
        switch (FileSystemNative.RenameNoReplaceAtomic(StagingPath, Destination, out _))
        {
            case FileSystemNative.RenameOutcome.Done:
                return;
            case FileSystemNative.RenameOutcome.Conflict:
                throw new BigModelException(BigModelErrorCode.DestinationExists, "the destination appeared while writing; it was left untouched.", Destination);
            default:
                Directory.Move(StagingPath, Destination);
                return;
        }
    }

    private void ReplaceExisting()
    {
        if (Directory.Exists(Destination)
            && FileSystemNative.Exchange(StagingPath, Destination, out _) == FileSystemNative.RenameOutcome.Done)
        {
            // The staging name now holds the previous content; a kill during this delete leaves a staging leftover.
            DeleteQuietly(StagingPath);
            return;
        }
        var aside = Path.Combine(Parent, "." + Name + SetAsideMarker + Token());
        MovePath(Destination, aside);
        try
        {
            Directory.Move(StagingPath, Destination);
        }
        catch
        {
            MovePath(aside, Destination);
            throw;
        }
        DeleteQuietly(aside);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (!_committed) DeleteQuietly(StagingPath);
        // Closing deletes the lock file (DeleteOnClose unlinks before releasing the lock, see DestinationLock).
        _lock.Dispose();
    }

    private IReadOnlyList<string> RecoverLeftovers()
    {
        var found = Leftovers(Parent, Name).ToList();
        if (found.Count == 0) return [];
        var handled = new List<string>();
        // A destination renamed aside by a run killed before it moved the new one in: put it back.
        if (!Exists(Destination))
        {
            var previous = found.Where(l => l.SetAside).OrderByDescending(l => LastWrite(l.Path)).FirstOrDefault();
            if (previous.Path is not null)
            {
                MovePath(previous.Path, Destination);
                handled.Add(previous.Path);
                found.Remove(previous);
            }
        }
        foreach (var leftover in found)
        {
            DeleteQuietly(leftover.Path);
            handled.Add(leftover.Path);
        }
        return handled;
    }

    private static IEnumerable<(string Path, bool SetAside)> Leftovers(string parent, string name)
    {
        var staging = "." + name + StagingMarker;
        var aside = "." + name + SetAsideMarker;
        foreach (var entry in Directory.EnumerateFileSystemEntries(parent))
        {
            var entryName = Path.GetFileName(entry);
            if (entryName.StartsWith(staging, StringComparison.Ordinal)) yield return (entry, false);
            else if (entryName.StartsWith(aside, StringComparison.Ordinal)) yield return (entry, true);
        }
    }

    private static bool Exists(string path) => Directory.Exists(path) || File.Exists(path) || new FileInfo(path).LinkTarget is not null;

    /// <summary>True for a file, a link, or a folder with anything in it; an empty folder may be written over.</summary>
    private static bool HasContent(string path)
    {
        if (Directory.Exists(path)) return new DirectoryInfo(path).LinkTarget is not null || Directory.EnumerateFileSystemEntries(path).Any();
        return Exists(path);
    }

    private static void MovePath(string from, string to)
    {
        if (Directory.Exists(from) && new DirectoryInfo(from).LinkTarget is null) Directory.Move(from, to);
        else File.Move(from, to);
    }

    private static DateTime LastWrite(string path) =>
        Directory.Exists(path) ? Directory.GetLastWriteTimeUtc(path) : File.GetLastWriteTimeUtc(path);

    internal static void DeleteQuietly(string path)
    {
        try
        {
            if (Directory.Exists(path) && new DirectoryInfo(path).LinkTarget is null) Directory.Delete(path, recursive: true);
            else if (File.Exists(path) || new FileInfo(path).LinkTarget is not null) File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static string Token() => Convert.ToHexString(RandomNumberGenerator.GetBytes(6)).ToLowerInvariant();

    internal static BigModelException IoError(string path, Exception e) => FileErrors.Map(e, path);
}
