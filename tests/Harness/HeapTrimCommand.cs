using System.Runtime.InteropServices;
using System.Text.Json;
using BigModel.Inference;

namespace BigModel.Harness;

/// <summary>
/// Leaves freed holes in the C heap, as a closed session does, and trims it (<see cref="NativeHeap.Trim"/>), in a
/// process of its own: in a test process other threads' allocations reuse and move the same memory. Prints one JSON
/// line: how much of the freed blocks was resident before and after trimming, and whether the trim ran.
/// </summary>
internal static unsafe class HeapTrimCommand
{
    private const int Blocks = 80, BlockBytes = 8 << 20;

    public static int Run(Arguments args)
    {
        // As after a first session, whose freed tensors raised glibc's mmap threshold: blocks of a few megabytes come
        // from the heap, not from mappings of their own (set here, not left to the history of the process). Small live
        // allocations between them keep the freed blocks as holes that free() alone does not return.
        if (mallopt(MmapThreshold, 32 << 20) == 0 || mallopt(TrimThreshold, int.MaxValue) == 0)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(new { skipped = "mallopt is not glibc's here" }));
            return 3;
        }
        var blocks = new nint[Blocks];
        var pins = new nint[Blocks];
        for (int i = 0; i < Blocks; i++)
        {
            blocks[i] = Touch(Marshal.AllocHGlobal(BlockBytes), BlockBytes);
            pins[i] = Marshal.AllocHGlobal(64);
        }
        foreach (var b in blocks) Marshal.FreeHGlobal(b);
        long before = ResidentBytes(blocks);
        bool trimmed = NativeHeap.Trim();
        long after = ResidentBytes(blocks);
        foreach (var p in pins) Marshal.FreeHGlobal(p);
        Console.Out.WriteLine(JsonSerializer.Serialize(new { freedBytes = (long)Blocks * BlockBytes, before, after, trimmed }));
        return 0;
    }

    /// <summary>Resident bytes in the pages strictly inside each block (its first page holds the allocator's header).</summary>
    private static long ResidentBytes(nint[] blocks)
    {
        const long Page = 4096;
        long pages = BlockBytes / Page - 2, resident = 0;
        var vector = new byte[pages];
        foreach (var block in blocks)
        {
            long start = ((long)block + Page - 1) / Page * Page + Page;
            fixed (byte* v = vector)
                if (mincore((nint)start, (nuint)(pages * Page), v) != 0) continue;   // unmapped: nothing resident
            resident += vector.Count(b => (b & 1) != 0) * Page;
        }
        return resident;
    }

    private const int TrimThreshold = -1, MmapThreshold = -3;   // glibc's M_TRIM_THRESHOLD, M_MMAP_THRESHOLD

    [DllImport("libc")]
    private static extern int mallopt(int parameter, int value);

    [DllImport("libc", SetLastError = true)]
    private static extern int mincore(nint address, nuint length, byte* vector);

    private static nint Touch(nint block, int bytes)
    {
        for (int offset = 0; offset < bytes; offset += 4096) ((byte*)block)[offset] = 1;
        return block;
    }
}
