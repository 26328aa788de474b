using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace BigModel.IO;

/// <summary>
/// Read handles that bypass the page cache (Linux <c>O_DIRECT</c>): the bytes go from the storage straight into the
/// caller's buffer. Streaming weights that do not fit in memory through the page cache makes the kernel reclaim
/// pages under the process's feet (inside a container limit it stalls the reader on every block); unbuffered
/// reads hold no page cache at all. Offsets, lengths and buffer addresses must be multiples of <see cref="Alignment"/>.
/// </summary>
internal static class UnbufferedFile
{
    /// <summary>
    /// Alignment every unbuffered read keeps. Storage needs its logical block size (512 or 4,096 bytes); one page
    /// suits every device without asking the block layer.
    /// </summary>
    public const int Alignment = 4096;

    private const int ReadOnly = 0;
    private const int CloseOnExec = 0x80000;

    /// <summary>
    /// An unbuffered read handle on <paramref name="path"/>, or null where the platform or file system does not
    /// offer one (not Linux, tmpfs on older kernels, some network and FUSE file systems): callers then read
    /// through the page cache. A first aligned read proves the handle works before anyone relies on it.
    /// </summary>
    public static unsafe SafeFileHandle? TryOpen(string path)
    {
        if (!OperatingSystem.IsLinux() || DirectFlag() is not int direct) return null;
        int fd = open(path, ReadOnly | CloseOnExec | direct);
        if (fd < 0) return null;
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        var probe = NativeMemory.AlignedAlloc(Alignment, Alignment);
        try
        {
            if (pread(fd, probe, Alignment, 0) >= 0) return handle;
        }
        finally
        {
            NativeMemory.AlignedFree(probe);
        }
        handle.Dispose();
        return null;
    }

    /// <summary>Rounds <paramref name="value"/> down to a multiple of <see cref="Alignment"/>.</summary>
    public static long AlignDown(long value) => value / Alignment * Alignment;

    /// <summary>Rounds <paramref name="value"/> up to a multiple of <see cref="Alignment"/>.</summary>
    public static long AlignUp(long value) => (value + Alignment - 1) / Alignment * Alignment;

    // O_DIRECT differs between architectures (asm-generic: 0x4000 on x86; 0x10000 on arm and arm64).
    private static int? DirectFlag() => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 or Architecture.X86 => 0x4000,
        Architecture.Arm64 or Architecture.Arm => 0x10000,
        _ => null,
    };

    [DllImport("libc", SetLastError = true)]
    private static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe nint pread(int fd, void* buffer, nint count, long offset);
}
