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
}

/// <summary>Page-in of mapped address ranges, with the system calls each <see cref="PageInMethod"/> needs.</summary>
internal static class PageIn
{
    private const int MadvWillNeed = 3;
    private const int MadvPopulateRead = 22;
    private static volatile bool s_populateUnsupported;

    public static void Run(PageInMethod method, IntPtr address, long length)
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

    private static unsafe void Touch(long start, long end, long page)
    {
        int sum = 0;
        for (long p = start; p < end; p += page) sum += Volatile.Read(ref *(byte*)p);
        GC.KeepAlive(sum);
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int madvise(IntPtr address, nuint length, int advice);
}
