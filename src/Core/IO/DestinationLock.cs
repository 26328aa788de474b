using BigModel.Errors;

namespace BigModel.IO;

/// <summary>
/// An exclusive, non-waiting lock on something being written, held through a lock file beside it: flock on Unix,
/// share modes on Windows. A second writer fails at once with <see cref="BigModelErrorCode.DestinationLocked"/>
/// instead of waiting or interleaving its output with the first. The lock file is removed when the lock is released;
/// a writer killed while holding it leaves the file, but the operating system releases the lock with the process, so
/// the next writer takes it over.
/// </summary>
internal static class DestinationLock
{
    /// <summary>Takes the lock at <paramref name="lockPath"/> for <paramref name="destination"/>; dispose the stream to release it.</summary>
    public static FileStream Acquire(string lockPath, string destination)
    {
        // DeleteOnClose removes the name while the lock is still held; a writer that opened the old file just before
        // that finds its file has no name left (link count 0) and retries on the current one.
        for (int attempt = 0; attempt < 8; attempt++)
        {
            FileStream stream;
            try
            {
                stream = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
            }
            catch (IOException e) when (IsSharingViolation(e))
            {
                throw new BigModelException(BigModelErrorCode.DestinationLocked,
                    $"another process or thread is writing this destination and holds its lock ({lockPath}); wait for it to finish, or choose another destination.", destination, inner: e);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw FileErrors.Map(e, lockPath);
            }
            if (FileSystemNative.LinkCount(stream.SafeFileHandle) is 0)
            {
                stream.Dispose();
                continue;
            }
            return stream;
        }
        throw new BigModelException(BigModelErrorCode.DestinationLocked, "the destination's lock file keeps changing; another writer is busy with it.", destination);
    }

    private static bool IsSharingViolation(IOException e)
    {
        int code = e.HResult & 0xFFFF;
        // EWOULDBLOCK/EAGAIN (Linux 11, macOS 35) from flock; ERROR_SHARING_VIOLATION / ERROR_LOCK_VIOLATION on Windows.
        return code is 11 or 35 or 32 or 33;
    }
}
