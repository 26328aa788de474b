using BigModel.Checkpoints;
using BigModel.DeviceMaps;
using BigModel.Errors;
using BigModel.Memory;

namespace BigModel.Inference;

/// <summary>
/// Decides where a model's blocks live for a run, from what the user gave: a device map (object or Accelerate JSON
/// file), a strategy name, or nothing. Without a budget the machine is measured the way New-DeviceMap measures it
/// (free GPU memory; RAM actually available to this process, container limits included), minus what the run itself
/// needs, so a model bigger than memory offloads on its own.
/// </summary>
public static class InferencePlacement
{
    /// <summary>
    /// Memory a process running a model holds besides weights, KV cache and activations: the .NET host, libtorch and
    /// the tokenizer (a Linux x64 process running a model holds about 175 MiB of it resident: 70 MiB anonymous, 100 MiB of
    /// mapped code); the rest is room for the code pages' page cache.
    /// What the process already holds when the budget is measured counts towards it.
    /// </summary>
    public const long RuntimeBaselineBytes = 256L << 20;

    /// <summary>What loading libtorch and its first kernels adds to a process (resident code, allocator pools).</summary>
    private const long TorchLoadBytes = 160L << 20;

    /// <summary>Strategies accepted where a device map is expected.</summary>
    public static readonly IReadOnlyList<string> StrategyNames = ["auto", "sequential", "balanced", "balanced_low_0"];

    /// <summary>
    /// The device map to run <paramref name="checkpoint"/> with.
    /// </summary>
    /// <param name="checkpoint">The model.</param>
    /// <param name="map">A map already made (New-DeviceMap), or null.</param>
    /// <param name="mapPathOrStrategy">An Accelerate JSON file, or auto | sequential | balanced | balanced_low_0; used when <paramref name="map"/> is null.</param>
    /// <param name="maxMemory">Budget per device when planning; null measures this machine.</param>
    /// <param name="dtype">Dtype the weights will be computed in.</param>
    /// <param name="contextTokens">Tokens per sequence the run will hold (prompt + new tokens), for the KV cache reserve.</param>
    /// <param name="prefetchDepth">
    /// Blocks the run will bring in ahead of the computing one (<see cref="InferenceOptions.PrefetchDepth"/>; 0 without
    /// prefetch): a measured budget keeps room for that many blocks in flight besides the computing one.
    /// </param>
    public static DeviceMap Resolve(Checkpoint checkpoint, DeviceMap? map, string? mapPathOrStrategy, MaxMemory? maxMemory, DType? dtype, int contextTokens,
        int prefetchDepth = InferenceOptions.DefaultPrefetchDepth)
    {
        if (prefetchDepth is < 0 or > InferenceOptions.MaxPrefetchDepth)
            throw new BigModelException(BigModelErrorCode.InvalidArgument, $"The prefetch depth is {prefetchDepth}; use 0 to {InferenceOptions.MaxPrefetchDepth}.", checkpoint.Path);
        int window = 1 + prefetchDepth;
        if (map is not null) return map.HasSizes ? map : map.Measure(checkpoint, dtype);
        if (mapPathOrStrategy is { Length: > 0 } given && !StrategyNames.Contains(given.Trim().ToLowerInvariant()))
        {
            if (!File.Exists(given))
                throw new BigModelException(BigModelErrorCode.InvalidDeviceMap,
                    $"'{given}' is neither a device map file nor a strategy ({string.Join(", ", StrategyNames)}).", given);
            return DeviceMap.Load(given).Measure(checkpoint, dtype);
        }
        // A measured budget is everything free: keep back what running needs besides the weights.
        long reserve = maxMemory is null ? RunReserve(checkpoint, dtype, contextTokens) : 0;
        DeviceMapOptions Options(long held, bool clean = true) => new()
        {
            Clean = clean,
            MaxMemory = maxMemory,
            Strategy = DeviceMapStrategies.Parse(mapPathOrStrategy),
            DType = dtype,
            Reserve = held,
        };
        var planned = DeviceMapPlanner.Plan(checkpoint, Options(reserve));
        if (maxMemory is not null || !planned.UsesDisk || planned.LargestLayerBytes is not long largest) return planned;
        // Streaming from disk every token: spend the same budget on the placement that reads the least per token.
        var blocks = DeviceMapPlanner.Plan(checkpoint, Options(reserve, clean: false));
        if (blocks.Budget is { } budget && budget.TryGet(Device.Cpu, out long cpuBytes)
            && StreamingPlacement.Improve(blocks, checkpoint, cpuBytes, window, dtype) is { } streaming)
            return streaming;
        // Offloading: the blocks in flight (the one computing and the prefetched ones) need memory too, in page
        // cache or staging buffers, and under a container limit both count. The planner keeps one largest layer
        // back; keep the rest of the widest prefetch window back as well, so the resident part never crowds it out.
        var disk = planned.Entries.Where(e => e.Device.IsDisk).Select(e => e.Bytes ?? 0).ToList();
        long extra = WeightPlan.WidestRun(disk, window) - largest;
        return extra > 0 ? DeviceMapPlanner.Plan(checkpoint, Options(reserve + extra)) : planned;
    }

    /// <summary>KV cache and activations for one sequence of <paramref name="contextTokens"/>, plus the runtime's baseline.</summary>
    public static long RunReserve(Checkpoint checkpoint, DType? dtype, int contextTokens)
    {
        var precision = dtype switch
        {
            DType.F16 => MemoryDType.Float16,
            DType.BF16 => MemoryDType.BFloat16,
            _ => MemoryDType.Float32,
        };
        var estimate = ModelMemoryEstimator.Estimate(checkpoint, new MemoryEstimateOptions
        {
            DTypes = [precision],
            ContextLength = Math.Max(1, contextTokens),
        })[0];
        // What this process holds already is part of the baseline (it is not free memory any more); libtorch, until
        // it is loaded, is not, whatever the host holds (a PowerShell session can be larger than the whole baseline).
        var now = ProcessMemory.Read();
        long baseline = Math.Max(0, RuntimeBaselineBytes - now.RssAnonBytes - now.RssFileBytes);
        if (!TorchRuntime.IsLoaded) baseline = Math.Max(baseline, TorchLoadBytes);
        return baseline + estimate.KvCacheBytes + estimate.ActivationBytes;
    }

    /// <summary>Host memory a run may use: what this process can still get (container limits included).</summary>
    public static long AvailableHostBytes() => SystemMemory.AvailableBytes();
}
