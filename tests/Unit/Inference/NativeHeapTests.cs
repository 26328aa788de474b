using System.Runtime.InteropServices;
using BigModel.Inference;
using BigModel.Tests.Support;

namespace BigModel.Tests.Inference;

/// <summary>Freed heap memory handed back to the system after a session closes (glibc).</summary>
[Collection(AloneCollection.Name)]
public sealed unsafe class NativeHeapTests
{
    [Fact]
    public void Trimming_returns_freed_heap_holes_to_the_system()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.False(NativeHeap.Trim());
            return;
        }
        // As after a first session: freeing a large mapped block raises glibc's mmap threshold, so the next blocks
        // of a few megabytes come from the heap. Small live allocations between them keep the freed blocks as holes
        // that free() alone does not return.
        Marshal.FreeHGlobal(Touch(Marshal.AllocHGlobal(24 << 20), 24 << 20));
        const int Blocks = 80, BlockBytes = 8 << 20;
        var blocks = new nint[Blocks];
        var pins = new nint[Blocks];
        for (int i = 0; i < Blocks; i++)
        {
            blocks[i] = Touch(Marshal.AllocHGlobal(BlockBytes), BlockBytes);
            pins[i] = Marshal.AllocHGlobal(64);
        }
        foreach (var b in blocks) Marshal.FreeHGlobal(b);
        // Counted by page residency inside the freed blocks, not by the process's total, which other tests running
        // at the same time move by more than this holds.
        long before = ResidentBytes(blocks, BlockBytes);
        bool trimmed = NativeHeap.Trim();
        long after = ResidentBytes(blocks, BlockBytes);
        foreach (var p in pins) Marshal.FreeHGlobal(p);
        Assert.True(trimmed || before < 16 << 20, "malloc_trim is not available although freed memory was held");
        if (before < 16 << 20) return;   // free() already gave it back (glibc versions differ)
        // Most runs give back every page; now and then glibc keeps some of them in use, so at least one block's worth.
        Assert.True(after <= before - BlockBytes, $"{before >> 20} MiB of the freed blocks were resident before trimming, {after >> 20} MiB after");
    }

    /// <summary>Resident bytes in the pages strictly inside each block (its first page holds the allocator's header).</summary>
    private static long ResidentBytes(nint[] blocks, int blockBytes)
    {
        const long Page = 4096;
        long pages = blockBytes / Page - 2, resident = 0;
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

    [DllImport("libc", SetLastError = true)]
    private static extern int mincore(nint address, nuint length, byte* vector);

    private static nint Touch(nint block, int bytes)
    {
        for (int offset = 0; offset < bytes; offset += 4096) ((byte*)block)[offset] = 1;
        return block;
    }
}
