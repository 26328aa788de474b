using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace BigModel.IO;

/// <summary>
/// The few Linux/POSIX calls .NET does not expose that atomic, durable and fast writing needs: renameat2 (swap two
/// folders in one step, or rename without replacing), fsync of a directory, statx's link count, owner and mode, and copy_file_range. Every entry point reports whether it could act, so callers fall back to portable code elsewhere.
/// </summary>
internal static partial class FileSystemNative
{
    private const int AtCurrentDirectory = -100;
    private const uint RenameNoReplace = 1;
    private const uint RenameExchange = 2;
    private const int ReadOnly = 0;
    private const int Directory = 0x10000; // O_DIRECTORY on Linux x64/arm64
    private const int CloseOnExec = 0x80000;

    public enum RenameOutcome
    {
        Done,
        /// <summary>The platform or file system cannot do it; use the portable path.</summary>
        Unsupported,
        /// <summary>The target exists (RENAME_NOREPLACE) or vanished (RENAME_EXCHANGE).</summary>
        Conflict,
    }

    /// <summary>Atomically swaps two existing paths (Linux 3.15+).</summary>
    public static RenameOutcome Exchange(string a, string b, out int errno) => Rename(a, b, RenameExchange, out errno);

    /// <summary>Renames <paramref name="from"/> to <paramref name="to"/> unless <paramref name="to"/> exists, atomically.</summary>
    public static RenameOutcome RenameNoReplaceAtomic(string from, string to, out int errno) => Rename(from, to, RenameNoReplace, out errno);

    private static RenameOutcome Rename(string from, string to, uint flags, out int errno)
    {
        errno = 0;
        if (!OperatingSystem.IsLinux()) return RenameOutcome.Unsupported;
        try
        {
            if (renameat2(AtCurrentDirectory, from, AtCurrentDirectory, to, flags) == 0) return RenameOutcome.Done;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return RenameOutcome.Unsupported;
        }
        errno = Marshal.GetLastPInvokeError();
        return errno switch
        {
            17 or 2 => RenameOutcome.Conflict,          // EEXIST, ENOENT
            38 or 22 or 95 or 1 => RenameOutcome.Unsupported, // ENOSYS, EINVAL (file system without the flag), EOPNOTSUPP, EPERM
            _ => throw new IOException($"renameat2('{from}', '{to}') failed with errno {errno}.", errno),
        };
    }

    /// <summary>Makes a directory's entries durable (new names, renames); a no-op where unsupported.</summary>
    public static void FlushDirectory(string path)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS() && !OperatingSystem.IsFreeBSD()) return;
        try
        {
            int fd = open(path, ReadOnly | (OperatingSystem.IsLinux() ? Directory | CloseOnExec : 0));
            if (fd < 0) return;
            try { fsync(fd); }
            finally { close(fd); }
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
        }
    }

    /// <summary>
    /// The number of names an open file still has (0 once it was deleted), or null where it cannot be asked.
    /// statx's buffer layout is the same on every Linux architecture, unlike struct stat's.
    /// </summary>
    public static unsafe int? LinkCount(SafeFileHandle handle)
    {
        if (!OperatingSystem.IsLinux()) return null;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            byte* buffer = stackalloc byte[256];
            const int emptyPath = 0x1000; // AT_EMPTY_PATH
            const uint nlinkMask = 0x4;   // STATX_NLINK
            if (statx((int)handle.DangerousGetHandle(), "", emptyPath, nlinkMask, buffer) != 0) return null;
            return (int)*(uint*)(buffer + 16); // stx_nlink
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return null;
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>What a path names once symbolic links are followed.</summary>
    public enum FileKind
    {
        Missing,
        Regular,
        Directory,
        /// <summary>A pipe, socket or device: opening or reading it may block or never end.</summary>
        Special,
        /// <summary>The platform cannot tell; callers fall back to portable checks.</summary>
        Unknown,
    }

    /// <summary>The kind of file <paramref name="path"/> names, following links (statx on Linux).</summary>
    public static unsafe FileKind KindOf(string path)
    {
        if (!OperatingSystem.IsLinux()) return FileKind.Unknown;
        try
        {
            byte* buffer = stackalloc byte[256];
            const uint typeMask = 0x1; // STATX_TYPE
            if (statx(AtCurrentDirectory, path, 0, typeMask, buffer) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                return errno is 2 or 20 ? FileKind.Missing : FileKind.Unknown; // ENOENT, ENOTDIR
            }
            int type = *(ushort*)(buffer + 28) & 0xF000; // stx_mode & S_IFMT
            return type switch
            {
                0x8000 => FileKind.Regular,
                0x4000 => FileKind.Directory,
                _ => FileKind.Special,
            };
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return FileKind.Unknown;
        }
    }

    /// <summary>
    /// The owner and mode bits (type included) of <paramref name="path"/> itself, a symbolic link not followed; null
    /// where the platform cannot tell or the path does not exist.
    /// </summary>
    public static unsafe (uint Owner, int Mode)? OwnerAndMode(string path)
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            byte* buffer = stackalloc byte[256];
            const int noFollow = 0x100;        // AT_SYMLINK_NOFOLLOW
            const uint mask = 0x1 | 0x2 | 0x8; // STATX_TYPE | STATX_MODE | STATX_UID
            if (statx(AtCurrentDirectory, path, noFollow, mask, buffer) != 0) return null;
            return (*(uint*)(buffer + 20), *(ushort*)(buffer + 28)); // stx_uid, stx_mode
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return null;
        }
    }

    /// <summary>The effective user id of this process, or null where there is none to ask.</summary>
    public static uint? EffectiveUserId()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            return geteuid();
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return null;
        }
    }

    /// <summary>
    /// Copies up to <paramref name="length"/> bytes between two open files inside the kernel (copy_file_range), at
    /// the given offsets, which advance by the bytes copied. Returns the bytes copied (0 at the input's end), or -1
    /// when the platform or these file systems cannot do it, so the caller copies through memory instead.
    /// Other failures (a full disk, an I/O error) throw an <see cref="IOException"/> whose HResult is the errno.
    /// </summary>
    public static long CopyRange(SafeFileHandle input, ref long inputOffset, SafeFileHandle output, ref long outputOffset, long length)
    {
        if (!OperatingSystem.IsLinux()) return -1;
        bool inputAdded = false, outputAdded = false;
        try
        {
            input.DangerousAddRef(ref inputAdded);
            output.DangerousAddRef(ref outputAdded);
            long copied = copy_file_range((int)input.DangerousGetHandle(), ref inputOffset, (int)output.DangerousGetHandle(), ref outputOffset, (nuint)length, 0);
            if (copied >= 0) return copied;
            int errno = Marshal.GetLastPInvokeError();
            // ENOSYS, EXDEV, EINVAL, EOPNOTSUPP, EBADF, EPERM, ETXTBSY: not possible here, copy another way.
            if (errno is 38 or 18 or 22 or 95 or 9 or 1 or 26) return -1;
            throw new IOException($"copy_file_range failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)}).", errno);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return -1;
        }
        finally
        {
            if (inputAdded) input.DangerousRelease();
            if (outputAdded) output.DangerousRelease();
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint copy_file_range(int input, ref long inputOffset, int output, ref long outputOffset, nuint length, uint flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int statx(int directory, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int renameat2(int oldDirectory, string oldPath, int newDirectory, string newPath, uint flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(int fd);

    [LibraryImport("libc")]
    private static partial uint geteuid();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);
}
