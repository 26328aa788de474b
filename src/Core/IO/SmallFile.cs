using BigModel.Errors;

namespace BigModel.IO;

/// <summary>
/// Reads a small metadata file (config.json, an index, a device map) whole, refusing one larger than its kind ever
/// is, so a hostile or mistaken path cannot make BigModel read gigabytes into memory. Only regular files are read
/// (a pipe would block, a device never end), and never more than the limit plus one byte, whatever size the file
/// system reports.
/// </summary>
public static class SmallFile
{
    /// <param name="path">The file.</param>
    /// <param name="maxBytes">The largest size accepted.</param>
    /// <param name="tooLarge">The error code for a file over the limit.</param>
    /// <param name="invalid">The error code for an empty file (its kind's "not JSON" code).</param>
    /// <param name="what">What the file is, for messages ("config.json", "the index").</param>
    public static byte[] ReadAllBytes(string path, long maxBytes, BigModelErrorCode tooLarge, BigModelErrorCode invalid, string what)
    {
        ReadableFile.RequireRegular(path, what);
        long reported = FileErrors.Guard(path, () => new FileInfo(path).Length, $"{what} does not exist.");
        if (reported > maxBytes)
            throw new BigModelException(tooLarge, $"{what} is {reported} bytes; the limit is {maxBytes}.", path);
        if (reported == 0)
            throw new BigModelException(invalid, $"{what} is empty.", path);
        using var stream = ReadableFile.OpenStream(path, what, bufferSize: 1);
        return FileErrors.Guard(path, () => ReadBounded(stream, reported, maxBytes, tooLarge, what, path));
    }

    private static byte[] ReadBounded(Stream stream, long reported, long maxBytes, BigModelErrorCode tooLarge, string what, string path)
    {
        // The file may grow between the size check and the read: the buffer grows too, but never past the limit + 1.
        long cap = Math.Min(maxBytes + 1, Array.MaxLength);
        var buffer = new byte[(int)Math.Min(reported + 1, cap)];
        int filled = 0;
        while (true)
        {
            if (filled == buffer.Length)
            {
                if (buffer.Length >= cap)
                    throw new BigModelException(tooLarge, $"{what} is more than {maxBytes} bytes, the limit.", path);
                Array.Resize(ref buffer, (int)Math.Min((long)buffer.Length * 2, cap));
            }
            int n = stream.Read(buffer, filled, buffer.Length - filled);
            if (n == 0) break;
            filled += n;
        }
        if (filled > maxBytes)
            throw new BigModelException(tooLarge, $"{what} is more than {maxBytes} bytes, the limit.", path);
        return filled == buffer.Length ? buffer : buffer[..filled];
    }
}
