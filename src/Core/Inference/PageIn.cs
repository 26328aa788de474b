using System.Runtime.InteropServices;

namespace BigModel.Inference;

/// <summary>How a prefetch brings a memory-mapped block's pages in ahead of its use.</summary>
public enum PageInMethod
{
    /// <summary><c>madvise(MADV_WILLNEED)</c>: asynchronous kernel read-ahead into the page cache.</summary>
    WillNeed,
    /// <summary>
    /// <c>madvise(MADV_POPULATE_READ)</c> (Linux 5.14+): reads the pages and maps them, so the compute touches no
    /// unmapped page; falls back to <see cref="Touch"/> on older kernels.
    /// </summary>
    Populate,
    /// <summary>Reads one byte per page from the prefetch thread, faulting every page in before the compute needs it.</summary>
    Touch,
    /// <summary>
    /// Reads the range from the file with large sequential reads (filling the page cache in big I/Os rather than
    /// page faults), then maps the now-cached pages as <see cref="Populate"/> does.
    /// </summary>
    Read,
}

/// <summary>Page-in of mapped address ranges, with the system calls each <see cref="PageInMethod"/> needs.</summary>
internal static class PageIn
{
    private const int MadvWillNeed = 3;
    private const int MadvPopulateRead = 22;
    private static volatile bool s_populateUnsupported;

    public static void Run(PageInMethod method, IntPtr address, long length, SafeHandle? file = null, long fileOffset = 0)
    {
        if (length <= 0) return;
        long page = Environment.SystemPageSize;
        long start = (long)address / page * page;
        long end = (long)address + length;
        switch (method)
        {
            case PageInMethod.WillNeed when OperatingSystem.IsLinux() || OperatingSystem.IsMacOS():
                // Advice failures cost speed, never correctness: the compute faults pages in itself.
                _ = madvise((IntPtr)start, (nuint)(end - start), MadvWillNeed);
                return;
            case PageInMethod.Read when file is not null:
                ReadThrough(file, fileOffset, length);
                Run(PageInMethod.Populate, address, length);
                return;
            case PageInMethod.Populate when OperatingSystem.IsLinux() && !s_populateUnsupported:
                if (madvise((IntPtr)start, (nuint)(end - start), MadvPopulateRead) == 0) return;
                // EINVAL: a kernel older than 5.14. Remember, and touch instead from now on.
                if (Marshal.GetLastPInvokeError() == 22) s_populateUnsupported = true;
                Touch(start, end, page);
                return;
            default:
                Touch(start, end, page);
                return;
        }
    }

    /// <summary>
    /// Drops a range from this process's page tables and from the page cache, so a used block stops holding memory
    /// until it is next read. Only whole pages inside the range are dropped from the cache; pages shared with a
    /// neighbouring tensor stay.
    /// </summary>
    public static void Release(IntPtr address, long length, SafeHandle file, long fileOffset)
    {
        if (length <= 0 || !OperatingSystem.IsLinux()) return;
        long page = Environment.SystemPageSize;
        long first = ((long)address + page - 1) / page * page;
        long end = ((long)address + length) / page * page;
        if (end <= first) return;
        // Unmapping first: the kernel never drops page-cache pages that a process still maps.
        _ = madvise((IntPtr)first, (nuint)(end - first), MadvDontNeed);
        long offset = fileOffset + (first - (long)address);
        _ = posix_fadvise((int)file.DangerousGetHandle(), offset, end - first, FadvDontNeed);
    }

    /// <summary>Drops a whole file's clean pages from the page cache (pages mapped by a process stay).</summary>
    public static void EvictFile(string path)
    {
        if (!OperatingSystem.IsLinux()) return;
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        _ = posix_fadvise((int)handle.DangerousGetHandle(), 0, 0, FadvDontNeed);
    }

    private const int MadvDontNeed = 4;
    private const int FadvDontNeed = 4;

    [DllImport("libc", SetLastError = true)]
    private static extern int posix_fadvise(int fd, long offset, long length, int advice);

    [ThreadStatic]
    private static byte[]? t_scratch;

    // The data is discarded: the read exists to make the kernel bring the pages into the page cache.
    private static void ReadThrough(SafeHandle file, long offset, long length)
    {
        var scratch = t_scratch ??= new byte[8 << 20];
        var handle = (Microsoft.Win32.SafeHandles.SafeFileHandle)file;
        long done = 0;
        while (done < length)
        {
            int n = RandomAccess.Read(handle, scratch.AsSpan(0, (int)Math.Min(scratch.Length, length - done)), offset + done);
            if (n == 0) return;
            done += n;
        }
    }

    private static unsafe void Touch(long start, long end, long page)
    {
        int sum = 0;
        for (long p = start; p < end; p += page) sum += Volatile.Read(ref *(byte*)p);
        GC.KeepAlive(sum);
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int madvise(IntPtr address, nuint length, int advice);
}
