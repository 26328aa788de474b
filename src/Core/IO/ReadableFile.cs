using BigModel.Errors;
using Microsoft.Win32.SafeHandles;

namespace BigModel.IO;

/// <summary>
/// Opens the files BigModel reads (weights, headers, metadata) after checking that they are regular files: opening a
/// named pipe blocks until something writes to it, and a device such as <c>/dev/zero</c> reports no length and never
/// ends, so a mistaken or hostile path could hang a build or exhaust memory. Failures are typed errors.
/// </summary>
public static class ReadableFile
{
    /// <summary>Throws unless <paramref name="path"/> is an existing regular file (links followed).</summary>
    /// <param name="path">The file.</param>
    /// <param name="what">What the file is, for messages ("the weight file", "config.json").</param>
    public static void RequireRegular(string path, string what)
    {
        switch (FileSystemNative.KindOf(path))
        {
            case FileSystemNative.FileKind.Regular:
                return;
            case FileSystemNative.FileKind.Missing:
                throw new BigModelException(BigModelErrorCode.PathNotFound, $"{what} does not exist.", path);
            case FileSystemNative.FileKind.Directory:
                throw new BigModelException(BigModelErrorCode.NotARegularFile, $"{what} is a folder, not a file.", path);
            case FileSystemNative.FileKind.Special:
                throw new BigModelException(BigModelErrorCode.NotARegularFile,
                    $"{what} is not a regular file but a pipe, socket or device; BigModel reads only regular files.", path);
        }
        // Elsewhere the type cannot be asked without opening; the size checks of each reader bound the rest.
        if (Directory.Exists(path))
            throw new BigModelException(BigModelErrorCode.NotARegularFile, $"{what} is a folder, not a file.", path);
        if (!File.Exists(path))
            throw new BigModelException(BigModelErrorCode.PathNotFound, $"{what} does not exist.", path);
    }

    /// <summary>A read handle on a regular file, for positional reads.</summary>
    public static SafeFileHandle OpenHandle(string path, string what, FileOptions options = FileOptions.RandomAccess)
    {
        RequireRegular(path, what);
        try
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, options);
        }
        catch (Exception e) when (FileErrors.IsFileSystemError(e))
        {
            throw FileErrors.Map(e, path, $"{what} does not exist.");
        }
    }

    /// <summary>A read stream on a regular file.</summary>
    public static FileStream OpenStream(string path, string what, int bufferSize = 4096, FileOptions options = FileOptions.None)
    {
        RequireRegular(path, what);
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize, options);
        }
        catch (Exception e) when (FileErrors.IsFileSystemError(e))
        {
            throw FileErrors.Map(e, path, $"{what} does not exist.");
        }
    }

    /// <summary>The length of an open file, or a typed error.</summary>
    public static long Length(SafeFileHandle handle, string path) => FileErrors.Guard(path, () => RandomAccess.GetLength(handle));

    /// <summary>
    /// Fills <paramref name="destination"/> from <paramref name="offset"/> on, however many reads it takes. A file that
    /// ends first is <paramref name="truncated"/>, with <paramref name="truncatedMessage"/>; a failing read an I/O error.
    /// </summary>
    public static void ReadExactly(SafeFileHandle handle, Span<byte> destination, long offset, string path,
        BigModelErrorCode truncated, Func<long, string> truncatedMessage, string? tensor = null)
    {
        long position = offset;
        while (!destination.IsEmpty)
        {
            int n;
            try
            {
                n = RandomAccess.Read(handle, destination, position);
            }
            catch (Exception e) when (FileErrors.IsFileSystemError(e))
            {
                throw FileErrors.Map(e, path, "the file disappeared.", position, tensor);
            }
            if (n == 0)
                throw new BigModelException(truncated, truncatedMessage(position), path, position, tensor);
            destination = destination[n..];
            position += n;
        }
    }
}
