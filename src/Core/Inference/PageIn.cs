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
    /// Asks the kernel which pages of the range are not in the page cache (<c>mincore</c>, about a millisecond per
    /// gigabyte), starts read-ahead for all of them at once (many I/Os in flight), then maps them as
    /// <see cref="Populate"/> does. Cheap when the pages are cached, fast when they are not.
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
            case PageInMethod.Read when file is not null && OperatingSystem.IsLinux():
                ReadMissing(file, start, end, fileOffset - ((long)address - start), page);
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

    /// <summary>
    /// Marks a mapped range as read at random (<c>MADV_RANDOM</c>): a fault then reads the page it needs and not the
    /// megabytes of read-around the kernel would add, which for a table only looked up in are neighbouring weights
    /// pulled into the page cache on every token.
    /// </summary>
    public static void AdviseRandom(IntPtr address, long length)
    {
        if (length <= 0 || !(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())) return;
        long page = Environment.SystemPageSize;
        long start = (long)address / page * page;
        _ = madvise((IntPtr)start, (nuint)((long)address + length - start), MadvRandom);
    }

    private const int MadvRandom = 1;

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

    /// <summary>Reads and maps the pages of [start, end) that the page cache lacks; <paramref name="startOffset"/> is start's file offset.</summary>
    private static unsafe void ReadMissing(SafeHandle file, long start, long end, long startOffset, long page)
    {
        long pages = (end - start + page - 1) / page;
        var resident = System.Buffers.ArrayPool<byte>.Shared.Rent((int)Math.Min(pages, int.MaxValue));
        try
        {
            int rc;
            fixed (byte* v = resident) rc = mincore((IntPtr)start, (nuint)(end - start), v);
            if (rc != 0)
            {
                // mincore is unavailable: read everything, which is correct, only slower when cached.
                Array.Clear(resident, 0, (int)pages);
            }
            // Runs of missing pages, joined across small cached gaps so that reads stay large. All runs are first
            // handed to the kernel's read-ahead at once (many I/Os in flight), then mapped in order, which waits
            // for each run's pages as they arrive.
            const long JoinGap = 64;
            var runs = new List<(long From, long To)>();
            long p = 0;
            while (p < pages)
            {
                if ((resident[p] & 1) != 0) { p++; continue; }
                long first = p, last = p;
                for (long q = p + 1; q < pages && q - last <= JoinGap; q++)
                    if ((resident[q] & 1) == 0) last = q;
                runs.Add((first * page, Math.Min((last + 1) * page, end - start)));
                p = last + 1;
            }
            foreach (var (from, to) in runs) _ = madvise((IntPtr)(start + from), (nuint)(to - from), MadvWillNeed);
            foreach (var (from, to) in runs)
            {
                if (s_populateUnsupported || madvise((IntPtr)(start + from), (nuint)(to - from), MadvPopulateRead) != 0)
                {
                    s_populateUnsupported = true;
                    ReadThrough(file, startOffset + from, to - from);
                }
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(resident);
        }
    }

    // The data is discarded: the read exists to make the kernel bring the pages into the page cache in large I/Os.
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

    /// <summary>Drops a file range from the page cache (pages no process maps).</summary>
    public static void DropFromCache(SafeHandle file, long offset, long length)
    {
        if (OperatingSystem.IsLinux() && length > 0) _ = posix_fadvise((int)file.DangerousGetHandle(), offset, length, FadvDontNeed);
    }

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe int mincore(IntPtr address, nuint length, byte* vector);

    private static unsafe void Touch(long start, long end, long page)
    {
        int sum = 0;
        for (long p = start; p < end; p += page) sum += Volatile.Read(ref *(byte*)p);
        GC.KeepAlive(sum);
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int madvise(IntPtr address, nuint length, int advice);
}
