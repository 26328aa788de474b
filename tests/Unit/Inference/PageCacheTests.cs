using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using BigModel.Checkpoints;
using BigModel.Inference;
using BigModel.Tests.Inference.Support;
using BigModel.Tests.Support;

namespace BigModel.Tests.Inference;

/// <summary>What disk offload leaves in the page cache, observed with mincore(2).</summary>
[Collection(TorchCollection.Name)]
public sealed class PageCacheTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Released_disk_blocks_leave_the_page_cache_and_kept_ones_stay()
    {
        if (!OperatingSystem.IsLinux()) return;
        var folder = RandomCheckpoints.WriteLlama(_dir.Combine("m"), new LlamaShape { Hidden = 256, Intermediate = 512, Heads = 4, KvHeads = 4, Layers = 8, Vocab = 64 }, 31);
        var checkpoint = Checkpoint.Open(folder);
        var layers = checkpoint.Tensors.Where(t => t.Name.StartsWith("model.layers.", StringComparison.Ordinal)).ToList();
        var allDisk = new Dictionary<string, string> { [""] = "disk" };
        var generation = new GenerationOptions { MaxNewTokens = 4, StopTokenIds = [] };
        // Freshly written pages are dirty until written back, and the kernel evicts only clean ones.
        using (var written = new FileStream(checkpoint.Files[0], FileMode.Open, FileAccess.ReadWrite)) written.Flush(flushToDisk: true);

        // Pages are brought in with PageIn.Read, which reads exactly the block's pages; touching them lets the kernel's
        // own readahead run past the block, so what stays cached would depend on its readahead window.
        double Cached(InferenceOptions options)
        {
            options = options with { PageIn = PageInMethod.Read };
            PageIn.EvictFile(checkpoint.Files[0]);
            using var session = InferenceSession.Open(folder, allDisk, options);
            session.Generate([1, 2], generation);
            session.Dispose();
            return ResidentFraction(checkpoint.Files[0], layers);
        }

        Assert.True(Cached(new InferenceOptions { Threads = 1, PrefetchDepth = 1 }) > 0.9);
        // Released after use, only the blocks the prefetcher had brought in for the next step remain.
        Assert.True(Cached(new InferenceOptions { Threads = 1, PrefetchDepth = 1, ReleaseDiskPages = true }) < 0.4);
        Assert.True(Cached(new InferenceOptions { Threads = 1, Prefetch = false, ReleaseDiskPages = true }) < 0.1);
        // Unbuffered reads leave nothing in the page cache at all (where the file system offers them).
        using (var probe = BigModel.IO.UnbufferedFile.TryOpen(checkpoint.Files[0]))
            if (probe is not null) Assert.True(Cached(new InferenceOptions { Threads = 1, DiskAccess = DiskAccess.Direct }) < 0.05);
        // Not chosen: read past the page cache when the memory granted could not cache the disk blocks anyway, cached when it could.
        long diskBytes = layers.Sum(t => t.ByteLength);
        Assert.True(Cached(new InferenceOptions { Threads = 1, PrefetchDepth = 1, AvailableHostBytes = diskBytes / 2 }) < 0.05);
        Assert.True(Cached(new InferenceOptions { Threads = 1, PrefetchDepth = 1, AvailableHostBytes = 4 * diskBytes }) > 0.9);
    }

    /// <summary>The fraction of the pages lying wholly inside <paramref name="tensors"/> that the page cache holds.</summary>
    private static unsafe double ResidentFraction(string file, IReadOnlyList<TensorInfo> tensors)
    {
        long page = Environment.SystemPageSize;
        long length = new FileInfo(file).Length;
        using var map = MemoryMappedFile.CreateFromFile(file, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        using var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
        byte* basePointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePointer);
        try
        {
            basePointer += view.PointerOffset;
            var vector = new byte[(length + page - 1) / page];
            fixed (byte* v = vector)
                Assert.Equal(0, mincore((IntPtr)basePointer, (nuint)length, v));
            long total = 0, resident = 0;
            foreach (var t in tensors)
                for (long p = (t.DataOffset + page - 1) / page; p < (t.DataOffset + t.ByteLength) / page; p++)
                {
                    total++;
                    if ((vector[p] & 1) != 0) resident++;
                }
            return (double)resident / total;
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe int mincore(IntPtr address, nuint length, byte* vector);
}
