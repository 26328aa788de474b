using BigModel.Errors;

namespace BigModel.IO;

/// <summary>Refuses a write before it starts when the disk cannot hold it, so no run fills a disk and then fails.</summary>
public static class FreeSpace
{
    /// <summary>
    /// Throws <see cref="BigModelErrorCode.DiskFull"/> when the disk of <paramref name="folder"/> has less than
    /// <paramref name="needed"/> bytes free. Where free space cannot be read (some network and virtual file systems)
    /// the write goes ahead and a full disk is reported when it happens.
    /// </summary>
    /// <param name="folder">Where the bytes will be written.</param>
    /// <param name="needed">Bytes the write needs.</param>
    /// <param name="what">What needs the space, starting a sentence ("the output", "converting the disk-placed weights").</param>
    public static void Ensure(string folder, long needed, string what)
    {
        long available;
        try
        {
            available = new DriveInfo(folder).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return;
        }
        if (available < needed)
            throw new BigModelException(BigModelErrorCode.DiskFull,
                $"{what} needs {ByteSize.Format(needed)} ({needed} bytes) in {folder}, but its disk has {ByteSize.Format(available)} ({available} bytes) free.", folder);
    }
}
