using System.Runtime.InteropServices;
using BigModel.Inference;

namespace BigModel.Tests.Inference;

/// <summary>Freed heap memory handed back to the system after a session closes (glibc).</summary>
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
        long baseline = ProcessMemory.Read().RssAnonBytes;
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
        long before = ProcessMemory.Read().RssAnonBytes;
        bool trimmed = NativeHeap.Trim();
        long after = ProcessMemory.Read().RssAnonBytes;
        foreach (var p in pins) Marshal.FreeHGlobal(p);
        // What free() left with the process (glibc versions differ in how much) must go back.
        long held = before - baseline;
        Assert.True(trimmed || held < 64 << 20, "malloc_trim is not available although freed memory was held");
        if (held < 64 << 20) return;
        Assert.True(before - after >= held * 4 / 5,
            $"trimming returned {(before - after) >> 20} MiB of the {held >> 20} MiB still held after freeing ({before >> 20} → {after >> 20} MiB)");
    }

    private static nint Touch(nint block, int bytes)
    {
        for (int offset = 0; offset < bytes; offset += 4096) ((byte*)block)[offset] = 1;
        return block;
    }
}
