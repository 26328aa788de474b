using BigModel.Errors;

namespace BigModel.IO;

/// <summary>
/// The one translation of file system exceptions into BigModel errors: a missing file or folder is
/// <see cref="BigModelErrorCode.PathNotFound"/>, a full disk or exhausted quota <see cref="BigModelErrorCode.DiskFull"/>,
/// any other I/O or permission failure <see cref="BigModelErrorCode.IoFailure"/>.
/// </summary>
public static class FileErrors
{
    /// <summary>True for the exceptions the file system throws (and <see cref="Map"/> translates).</summary>
    public static bool IsFileSystemError(Exception e) => e is IOException or UnauthorizedAccessException;

    /// <summary>The typed error for <paramref name="e"/>, about <paramref name="path"/>; a BigModel error passes through.</summary>
    /// <param name="e">What the file system threw.</param>
    /// <param name="path">The file or folder concerned.</param>
    /// <param name="missing">The message for a missing path, e.g. "the weight file disappeared."</param>
    /// <param name="offset">Where in the file the failure happened, when known.</param>
    /// <param name="tensor">The tensor being read or written, when known.</param>
    public static BigModelException Map(Exception e, string path, string? missing = null, long? offset = null, string? tensor = null)
    {
        if (e is BigModelException known) return known;
        if (e is FileNotFoundException or DirectoryNotFoundException)
            return new BigModelException(BigModelErrorCode.PathNotFound, missing ?? "no such file or folder.", path, offset, tensor, e);
        if (IsDiskFull(e))
            return new BigModelException(BigModelErrorCode.DiskFull, $"the disk is full: {e.Message}", path, offset, tensor, e);
        return new BigModelException(BigModelErrorCode.IoFailure, e.Message, path, offset, tensor, e);
    }

    /// <summary>ENOSPC (28) and EDQUOT (122) on Unix; ERROR_DISK_FULL (112) and ERROR_HANDLE_DISK_FULL (39) on Windows.</summary>
    public static bool IsDiskFull(Exception e) => e is IOException && (e.HResult & 0xFFFF) is 28 or 122 or 112 or 39;

    /// <summary>Runs <paramref name="action"/>, translating file system exceptions about <paramref name="path"/>.</summary>
    public static T Guard<T>(string path, Func<T> action, string? missing = null)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (IsFileSystemError(e))
        {
            throw Map(e, path, missing);
        }
    }

    /// <summary>Runs <paramref name="action"/>, translating file system exceptions about <paramref name="path"/>.</summary>
    public static void Guard(string path, Action action, string? missing = null)
    {
        try
        {
            action();
        }
        catch (Exception e) when (IsFileSystemError(e))
        {
            throw Map(e, path, missing);
        }
    }
}
