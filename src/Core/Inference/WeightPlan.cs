using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.IO;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>How a weight is held between uses.</summary>
internal enum SlotMode
{
    /// <summary>Loaded once onto the device it computes on (a GPU, or host memory for CPU compute).</summary>
    Resident,
    /// <summary>Held in pinned host memory and copied to the compute device for each use.</summary>
    Pinned,
    /// <summary>Computed with straight from the memory-mapped file (CPU compute only).</summary>
    Mapped,
    /// <summary>Read from the file for each use and freed after.</summary>
    Streamed,
}

/// <summary>One checkpoint tensor's placement decision, and once loaded, its resident tensor or mapped view.</summary>
internal sealed class WeightSlot(TensorInfo source, WeightLocation location, SlotMode mode, long targetBytes)
{
    public TensorInfo Source { get; } = source;
    public WeightLocation Location { get; } = location;
    public SlotMode Mode { get; } = mode;
    public long TargetBytes { get; } = targetBytes;
    public Tensor? Tensor { get; set; }
}

/// <summary>A block's compute device and what using it costs beyond its resident weights.</summary>
internal sealed class BlockRoute(ModelBlock block, WeightLocation compute, bool needsWork, long transientHostBytes, BlockReads? reads)
{
    public ModelBlock Block { get; } = block;
    public WeightLocation Compute { get; } = compute;
    /// <summary>True when each use needs weights brought in (copies, reads or page-in).</summary>
    public bool NeedsWork { get; } = needsWork;
    /// <summary>Host memory one use of the block holds for weights that are not resident.</summary>
    public long TransientHostBytes { get; } = transientHostBytes;
    /// <summary>The streamed weights read into the staging ring for each use, or null.</summary>
    public BlockReads? Reads { get; } = reads;
}

/// <summary>
/// Every placement decision of a session, made before any weight is loaded: where each block computes, how each
/// tensor is held, and what that costs in host memory. Building it allocates no tensor, whatever the model's size.
/// </summary>
internal sealed class WeightPlan
{
    private WeightPlan(WeightLocation execution, IReadOnlyList<BlockRoute> routes, IReadOnlyDictionary<string, WeightSlot> slots, int window, ScalarType? stagingType)
    {
        StagingType = stagingType;
        Execution = execution;
        Routes = routes;
        Slots = slots;
        HostResidentBytes = slots.Values.Where(s => s.Mode is SlotMode.Pinned || (s.Mode == SlotMode.Resident && s.Location.Kind != WeightLocationKind.Cuda)).Sum(s => s.TargetBytes);
        DeviceResidentBytes = slots.Values.Where(s => s.Mode == SlotMode.Resident && s.Location.Kind == WeightLocationKind.Cuda).Sum(s => s.TargetBytes);
        MappedBytes = slots.Values.Where(s => s.Mode == SlotMode.Mapped).Sum(s => s.Source.ByteLength);
        StreamedBytes = slots.Values.Where(s => s.Mode == SlotMode.Streamed).Sum(s => s.TargetBytes);
        DiskBytesPerToken = routes.SelectMany(r => r.Block.Tensors.Where(t => !t.Gathered).Select(t => slots[t.Source.Name]))
            .Where(s => s.Mode is SlotMode.Streamed or SlotMode.Mapped).Distinct().Sum(s => s.Source.ByteLength);
        var cycle = routes.Where(r => r.NeedsWork).ToList();
        WindowBytes = WidestRun(cycle.Select(r => r.TransientHostBytes).ToList(), window);
        StagingBytes = WidestRun(cycle.Select(r => r.Reads?.RegionBytes ?? 0).ToList(), window);
    }

    /// <summary>
    /// The most bytes <paramref name="window"/> consecutive entries of <paramref name="cycle"/> hold together, counting
    /// cyclically: blocks visited in the same order on every forward pass, as the prefetcher walks them.
    /// </summary>
    internal static long WidestRun(IReadOnlyList<long> cycle, int window)
    {
        long widest = 0;
        for (int i = 0; i < cycle.Count; i++)
        {
            long sum = 0;
            for (int k = 0; k < Math.Min(window, cycle.Count); k++) sum += cycle[(i + k) % cycle.Count];
            widest = Math.Max(widest, sum);
        }
        return widest;
    }

    public WeightLocation Execution { get; }
    public IReadOnlyList<BlockRoute> Routes { get; }
    public IReadOnlyDictionary<string, WeightSlot> Slots { get; }

    /// <summary>Weights held in host memory for the whole session (cpu placement, or everything resident when computing on the CPU).</summary>
    public long HostResidentBytes { get; }

    /// <summary>Weights resident on GPUs.</summary>
    public long DeviceResidentBytes { get; }

    /// <summary>Disk-placed weights computed with from their mappings (page cache, not anonymous memory).</summary>
    public long MappedBytes { get; }

    /// <summary>Disk-placed weights read for each use.</summary>
    public long StreamedBytes { get; }

    /// <summary>
    /// Stored bytes a forward pass reads from the weight files when nothing is cached: every disk-placed weight used
    /// whole (tables only looked up in read a few rows, and are not counted).
    /// </summary>
    public long DiskBytesPerToken { get; }

    /// <summary>The most host memory in-flight offloaded blocks hold at once (the prefetch window).</summary>
    public long WindowBytes { get; }

    /// <summary>Size of the staging ring streamed blocks are read into (part of <see cref="WindowBytes"/>).</summary>
    public long StagingBytes { get; }

    /// <summary>The type of the weights read through the staging ring, or null when none are.</summary>
    public ScalarType? StagingType { get; }

    public static WeightPlan Create(IReadOnlyList<ModelBlock> blocks, PlacementResolver placement, WeightLocation execution,
        WeightReader reader, InferenceOptions options, string? file)
    {
        var slots = new Dictionary<string, WeightSlot>(StringComparer.Ordinal);
        var computes = new List<WeightLocation>(blocks.Count);
        foreach (var block in blocks)
        {
            var locations = block.Tensors.Select(t => placement.Require(t.Source.Name, file)).ToList();
            var compute = ComputeLocation(block, placement, locations, execution);
            computes.Add(compute);
            for (int i = 0; i < block.Tensors.Count; i++)
            {
                var source = block.Tensors[i].Source;
                if (slots.ContainsKey(source.Name)) continue;
                var mode = Decide(locations[i], compute, source, reader, options, block.Tensors[i].Gathered);
                slots[source.Name] = new WeightSlot(source, locations[i], mode, reader.TargetBytes(source));
            }
        }
        var stagingType = StagingTypeOf(slots.Values, reader);
        var routes = new List<BlockRoute>(blocks.Count);
        for (int b = 0; b < blocks.Count; b++)
        {
            var block = blocks[b];
            var compute = computes[b];
            bool needsWork = false;
            long transient = 0;
            var staged = new List<(string Key, TensorInfo Source)>();
            foreach (var bt in block.Tensors)
            {
                var slot = slots[bt.Source.Name];
                switch (slot.Mode)
                {
                    case SlotMode.Streamed:
                        needsWork = true;
                        if (Stageable(slot, stagingType, reader)) staged.Add((bt.Key, slot.Source));
                        else transient += slot.TargetBytes;
                        break;
                    case SlotMode.Pinned:
                        needsWork = true;
                        break;
                    case SlotMode.Mapped:
                        // Row lookups need nothing brought in ahead; dense uses are paged in by the prefetcher.
                        needsWork |= (options.Prefetch && !bt.Gathered) || options.ReleasesDiskPages
                            || (!bt.Gathered && compute.Kind == WeightLocationKind.Cuda);
                        break;
                    default:
                        // A tied weight resident on another device than this block's is copied over for each use.
                        needsWork |= !SameDevice(slot.Location, compute);
                        break;
                }
            }
            var reads = BlockReads.Plan(staged);
            routes.Add(new BlockRoute(block, compute, needsWork, transient + (reads?.RegionBytes ?? 0), reads));
        }
        int window = options.Prefetch ? options.PrefetchDepth + 1 : 1;
        return new WeightPlan(execution, routes, slots, window, stagingType);
    }

    /// <summary>The type most streamed bytes are stored in (and computed in): the staging ring's type.</summary>
    private static ScalarType? StagingTypeOf(IEnumerable<WeightSlot> slots, WeightReader reader) =>
        slots.Where(s => s.Mode == SlotMode.Streamed && MappedWeightFiles.CanView(s.Source) && reader.TargetType(s.Source) == TorchTypes.ScalarTypeOf(s.Source))
            .GroupBy(s => TorchTypes.ScalarTypeOf(s.Source))
            .OrderByDescending(g => g.Sum(s => s.Source.ByteLength))
            .Select(g => (ScalarType?)g.Key)
            .FirstOrDefault();

    // Staged weights are read as stored and viewed in place: contiguous, unconverted, of the ring's type.
    private static bool Stageable(WeightSlot slot, ScalarType? stagingType, WeightReader reader) =>
        stagingType is ScalarType type && MappedWeightFiles.CanView(slot.Source)
        && TorchTypes.ScalarTypeOf(slot.Source) == type && reader.TargetType(slot.Source) == type;

    /// <summary>
    /// Whether host memory left beside the resident weights and the window is smaller than the disk-placed weights,
    /// so the page cache cannot keep them from one token to the next.
    /// </summary>
    public bool CannotCacheDiskWeights(long? available) =>
        available is long limit && MappedBytes + StreamedBytes > 0 && MappedBytes + StreamedBytes > limit - HostResidentBytes - WindowBytes;

    /// <summary>Whether the resident weights and the window fit in <paramref name="available"/> bytes (always, when unknown).</summary>
    public bool FitsHostBudget(long? available) => available is not long limit || HostResidentBytes + WindowBytes <= limit;

    /// <summary>Refuses, before loading, a plan that needs more host memory than <paramref name="available"/>.</summary>
    public void CheckHostBudget(long? available, string? file)
    {
        if (FitsHostBudget(available)) return;
        long limit = available!.Value;
        long required = HostResidentBytes + WindowBytes;
        var cpuBlocks = Routes.Where(r => r.Block.Tensors.Any(t => Slots[t.Source.Name].Mode is SlotMode.Resident or SlotMode.Pinned
            && Slots[t.Source.Name].Location.Kind == WeightLocationKind.Cpu)).Select(r => r.Block.Name).ToList();
        throw new BigModelException(BigModelErrorCode.MemoryBudgetExceeded,
            $"the placement keeps {ByteSize.Format(HostResidentBytes)} ({HostResidentBytes} bytes) of weights in host memory"
            + (cpuBlocks.Count > 0 ? $" ({cpuBlocks.Count} cpu block(s): {string.Join(", ", cpuBlocks.Take(4))}{(cpuBlocks.Count > 4 ? ", ..." : "")})" : "")
            + $" plus a prefetch window of {ByteSize.Format(WindowBytes)} ({WindowBytes} bytes), {required} bytes in all, but only {ByteSize.Format(limit)} ({limit} bytes) of host memory is available; place more blocks on \"disk\".",
            file);
    }

    private static WeightLocation ComputeLocation(ModelBlock block, PlacementResolver placement, List<WeightLocation> locations, WeightLocation execution)
    {
        // Blocks placed on a GPU compute there; cpu- and disk-placed blocks compute on the execution device.
        if (placement.Find(block.Name) is { Kind: WeightLocationKind.Cuda } own) return own;
        foreach (var l in locations)
            if (l.Kind == WeightLocationKind.Cuda) return l;
        return execution;
    }

    private static SlotMode Decide(WeightLocation location, WeightLocation compute, TensorInfo source, WeightReader reader, InferenceOptions options, bool gathered)
    {
        bool computeOnCpu = compute.Kind != WeightLocationKind.Cuda;
        return location.Kind switch
        {
            WeightLocationKind.Cuda => SlotMode.Resident,
            WeightLocationKind.Cpu => computeOnCpu ? SlotMode.Resident : SlotMode.Pinned,
            // A table only looked up in is read row by row from its mapping, even where blocks are otherwise copied.
            _ => (computeOnCpu || gathered) && (options.DiskAccess is DiskAccess.Mapped or DiskAccess.Auto || gathered) && reader.CanComputeMapped(source)
                ? SlotMode.Mapped
                : SlotMode.Streamed,
        };
    }

    internal static bool SameDevice(WeightLocation a, WeightLocation b) =>
        a.Kind == WeightLocationKind.Cuda ? b.Kind == WeightLocationKind.Cuda && a.DeviceIndex == b.DeviceIndex : b.Kind != WeightLocationKind.Cuda;
}
