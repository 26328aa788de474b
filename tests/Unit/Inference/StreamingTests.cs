using BigModel.Checkpoints;
using BigModel.DeviceMaps;
using BigModel.Inference;
using BigModel.IO;
using BigModel.Tests.Inference.Support;
using BigModel.Tests.Support;

namespace BigModel.Tests.Inference;

/// <summary>Streaming disk-placed blocks: the staging ring, the block reads, unbuffered files and the placement for streaming.</summary>
[Collection(TorchCollection.Name)]
public sealed class StreamingTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void The_ring_hands_out_aligned_regions_in_order_and_wraps_when_the_oldest_are_back()
    {
        using var ring = new StagingRing(TorchSharp.torch.ScalarType.Float32, 10 * 4096, pinned: false);
        var a = ring.Take(4 * 4096, default);
        var b = ring.Take(3 * 4096 + 1, default);   // rounds up to 4 pages
        Assert.Equal(0, a.Start);
        Assert.Equal(4 * 4096, b.Start);
        Assert.Equal(0, (long)ring.Address(b, 0) % UnbufferedFile.Alignment);
        a.Dispose();
        var c = ring.Take(4 * 4096, default);        // 2 pages left at the end: wraps into a's space
        Assert.Equal(0, c.Start);
        // Nothing fits until b comes back; a waiting taker wakes when it does.
        StagingRing.Region? late = null;
        var taker = new Thread(() => late = ring.Take(5 * 4096, default));
        taker.Start();
        Assert.False(taker.Join(200));
        b.Dispose();
        Assert.True(taker.Join(5000));
        Assert.Equal(4 * 4096, late!.Start);
        Assert.Equal(BigModel.Errors.BigModelErrorCode.InferenceFailed, Assert.Throws<BigModel.Errors.BigModelException>(() => ring.Take(11 * 4096, default)).Code);
        using var cancel = new CancellationTokenSource(100);
        Assert.ThrowsAny<OperationCanceledException>(() => ring.Take(6 * 4096, cancel.Token));
    }

    [Fact]
    public void Views_into_a_region_hold_the_bytes_read_there()
    {
        using var ring = new StagingRing(TorchSharp.torch.ScalarType.Float32, 8192, pinned: false);
        using var region = ring.Take(8192, default);
        unsafe
        {
            var floats = (float*)ring.Address(region, 4096);
            for (int i = 0; i < 6; i++) floats[i] = i * 1.5f;
        }
        using var view = ring.View(region, 4096, [2, 3], 6);
        Assert.Equal([0f, 1.5f, 3f, 4.5f, 6f, 7.5f], view.data<float>().ToArray());
    }

    [Fact]
    public void Block_reads_join_neighbouring_weights_into_aligned_extents_and_read_them_exactly()
    {
        // Three tensors at odd offsets: two next to each other, one 3 MiB further on.
        var path = _dir.Combine("w.bin");
        var bytes = new byte[5 << 20];
        new Random(5).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);
        TensorInfo T(string name, long offset, long count) => new(name, DType.F32, [count], count * 4, path, offset);
        var weights = new (string, TensorInfo)[] { ("a", T("a", 1000, 3000)), ("b", T("b", 13000, 5000)), ("c", T("c", (3 << 20) + 100, 1024)) };
        var reads = BlockReads.Plan(weights)!;
        Assert.Equal(2, reads.Extents.Count);
        Assert.All(reads.Extents, e => Assert.True(e.FileOffset % 4096 == 0 && e.Length % 4096 == 0 && e.RegionOffset % 4096 == 0));
        Assert.Equal(reads.Extents.Sum(e => e.Length), reads.RegionBytes);

        foreach (bool unbuffered in new[] { true, false })
        {
            using var handle = (unbuffered ? UnbufferedFile.TryOpen(path) : null) ?? TensorData.Open(path);
            using var ring = new StagingRing(TorchSharp.torch.ScalarType.Float32, reads.RegionBytes, pinned: false);
            using var region = ring.Take(reads.RegionBytes, default);
            foreach (var e in reads.Extents) BlockReads.Read(handle, e, ring.Address(region, e.RegionOffset));
            foreach (var w in reads.Weights)
            {
                var expected = bytes.AsSpan((int)w.Source.DataOffset, (int)w.Source.ByteLength).ToArray();
                var actual = new byte[w.Source.ByteLength];
                System.Runtime.InteropServices.Marshal.Copy(ring.Address(region, w.RegionOffset), actual, 0, actual.Length);
                Assert.Equal(expected, actual);
            }
        }
    }

    [Fact]
    public void Unbuffered_handles_open_on_local_files_where_the_platform_has_them()
    {
        var path = _dir.Combine("f.bin");
        File.WriteAllBytes(path, new byte[3 * 4096]);
        using var handle = UnbufferedFile.TryOpen(path);
        if (OperatingSystem.IsLinux() && DriveInfo.GetDrives().Any(d => path.StartsWith(d.Name, StringComparison.Ordinal) && d.DriveFormat == "ext4"))
            Assert.NotNull(handle);
        Assert.Null(UnbufferedFile.TryOpen(_dir.Combine("missing.bin")));
    }

    [Fact]
    public void A_file_that_shrank_after_planning_is_an_io_error_naming_it()
    {
        var path = _dir.Combine("w.bin");
        File.WriteAllBytes(path, new byte[64 << 10]);
        var reads = BlockReads.Plan([("a", new TensorInfo("a", DType.F32, [8192], 32768, path, 16384))])!;
        File.WriteAllBytes(path, new byte[20000]);
        using var handle = TensorData.Open(path);
        using var ring = new StagingRing(TorchSharp.torch.ScalarType.Float32, reads.RegionBytes, pinned: false);
        using var region = ring.Take(reads.RegionBytes, default);
        var e = Assert.Throws<BigModel.Errors.BigModelException>(() => BlockReads.Read(handle, reads.Extents[0], ring.Address(region, 0)));
        Assert.Equal(BigModel.Errors.BigModelErrorCode.IoFailure, e.Code);
        Assert.Equal(path, e.File);
    }

    [Fact]
    public void Streaming_placement_sends_the_embedding_table_to_disk_keeps_the_head_and_reads_less_per_token()
    {
        var folder = RandomCheckpoints.WriteLlama(_dir.Combine("m"), new LlamaShape { Hidden = 64, Intermediate = 160, Layers = 8, Vocab = 2000 }, 3);
        var checkpoint = Checkpoint.Open(folder);
        long Bytes(string prefix) => checkpoint.Tensors.Where(t => t.Name.StartsWith(prefix, StringComparison.Ordinal)).Sum(t => t.ByteLength);
        long head = Bytes("lm_head."), layer = Bytes("model.layers.0.");
        long budget = head + 6 * layer;
        var planned = DeviceMapPlanner.Plan(checkpoint, new DeviceMapOptions { MaxMemory = MaxMemory.ParseText($"cpu={budget}"), Clean = false });
        Assert.True(planned.UsesDisk);
        Assert.Equal(Device.Disk, planned["lm_head"]);

        var streaming = StreamingPlacement.Improve(planned, checkpoint, budget, windowBlocks: 3)!;
        Assert.Equal(Device.Disk, streaming["model.embed_tokens"]);
        Assert.Equal(Device.Cpu, streaming["lm_head"]);
        long resident = streaming.Entries.Where(e => e.Device == Device.Cpu).Sum(e => e.Bytes!.Value);
        var streamedBlocks = streaming.Entries.Where(e => e.Device.IsDisk && e.Module != "model.embed_tokens").ToList();
        Assert.True(resident + 3 * streamedBlocks.Max(e => e.Bytes!.Value) <= budget);
        long plannedStreamed = planned.Entries.Where(e => e.Device.IsDisk && e.Module != "model.embed_tokens").Sum(e => e.Bytes!.Value);
        Assert.True(streamedBlocks.Sum(e => e.Bytes!.Value) < plannedStreamed);

        // A tied table is the head too, read whole every token: it is not treated as a lookup.
        var tied = Checkpoint.Open(RandomCheckpoints.WriteLlama(_dir.Combine("t"), new LlamaShape { Hidden = 64, Intermediate = 160, Layers = 8, Vocab = 2000, Tied = true }, 3));
        var tiedPlan = DeviceMapPlanner.Plan(tied, new DeviceMapOptions { MaxMemory = MaxMemory.ParseText($"cpu={budget}"), Clean = false });
        var tiedStreaming = StreamingPlacement.Improve(tiedPlan, tied, budget, windowBlocks: 3);
        if (tiedStreaming is not null) Assert.NotEqual(Device.Disk, tiedStreaming.DeviceOf("model.embed_tokens.weight"));
    }

    [Fact]
    public void Direct_streaming_generates_what_resident_weights_generate()
    {
        var folder = RandomCheckpoints.WriteLlama(_dir.Combine("g"), new LlamaShape { Hidden = 128, Intermediate = 320, Layers = 4, Vocab = 500 }, 9);
        var generation = new GenerationOptions { MaxNewTokens = 10, StopTokenIds = [] };
        using var resident = InferenceSession.Open(folder, null, new InferenceOptions { Threads = 1 });
        var expected = resident.Generate([1, 2], generation).GeneratedIds;
        var allDisk = new Dictionary<string, string> { [""] = "disk" };
        foreach (var options in new[]
        {
            new InferenceOptions { Threads = 1, DiskAccess = DiskAccess.Direct },
            new InferenceOptions { Threads = 1, DiskAccess = DiskAccess.Direct, PrefetchDepth = 1 },
            new InferenceOptions { Threads = 1, DiskAccess = DiskAccess.Direct, Prefetch = false },
            new InferenceOptions { Threads = 1, DiskAccess = DiskAccess.Direct, DType = DType.F16 },
        })
        {
            using var session = InferenceSession.Open(folder, allDisk, options);
            Assert.Equal(DiskAccess.Direct, session.LoadReport.DiskAccess);
            if (options.DType is null) Assert.Equal(expected, session.Generate([1, 2], generation).GeneratedIds);
            else session.Generate([1, 2], generation);
        }
        // Left to choose, a budget that cannot cache the disk blocks streams them unbuffered (the window of three
        // layers still fits); a roomy one maps them.
        long bytes = Checkpoint.Open(folder).ByteLength;
        using (var tight = InferenceSession.Open(folder, allDisk, new InferenceOptions { Threads = 1, AvailableHostBytes = bytes * 4 / 5 }))
        {
            Assert.Equal(DiskAccess.Direct, tight.LoadReport.DiskAccess);
            Assert.Equal(expected, tight.Generate([1, 2], generation).GeneratedIds);
        }
        using var roomy = InferenceSession.Open(folder, allDisk, new InferenceOptions { Threads = 1, AvailableHostBytes = 10 * bytes });
        Assert.Equal(DiskAccess.Mapped, roomy.LoadReport.DiskAccess);
        // Too little even for the staging ring: mapped pages, released after use, still run.
        using var starved = InferenceSession.Open(folder, allDisk, new InferenceOptions { Threads = 1, AvailableHostBytes = bytes / 4 });
        Assert.Equal(DiskAccess.Mapped, starved.LoadReport.DiskAccess);
        Assert.Equal(expected, starved.Generate([1, 2], generation).GeneratedIds);
    }
}
