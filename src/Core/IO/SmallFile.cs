using BigModel.Errors;

namespace BigModel.IO;

/// <summary>
/// Reads a small metadata file (config.json, an index, a device map) whole, refusing one larger than its kind ever
/// is, so a hostile or mistaken path cannot make BigModel read gigabytes into memory.
/// </summary>
public static class SmallFile
{
    /// <param name="path">The file.</param>
    /// <param name="maxBytes">The largest size accepted.</param>
    /// <param name="tooLarge">The error code for a file over the limit.</param>
    /// <param name="what">What the file is, for messages ("config.json", "the index").</param>
    public static byte[] ReadAllBytes(string path, long maxBytes, BigModelErrorCode tooLarge, string what)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists) throw new BigModelException(BigModelErrorCode.PathNotFound, $"{what} does not exist.", path);
            if (info.Length > maxBytes)
                throw new BigModelException(tooLarge, $"{what} is {info.Length} bytes; the limit is {maxBytes}.", path);
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, path, inner: e);
        }
    }
}
