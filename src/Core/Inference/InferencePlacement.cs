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
    /// <summary>Memory the runtime needs besides weights, KV cache and activations (libtorch, buffers, the host).</summary>
    public const long RuntimeBaselineBytes = 512L << 20;

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
    public static DeviceMap Resolve(Checkpoint checkpoint, DeviceMap? map, string? mapPathOrStrategy, MaxMemory? maxMemory, DType? dtype, int contextTokens)
    {
        if (map is not null) return map.HasSizes ? map : map.Measure(checkpoint, dtype);
        if (mapPathOrStrategy is { Length: > 0 } given && !StrategyNames.Contains(given.Trim().ToLowerInvariant()))
        {
            if (!File.Exists(given))
                throw new BigModelException(BigModelErrorCode.InvalidDeviceMap,
                    $"'{given}' is neither a device map file nor a strategy ({string.Join(", ", StrategyNames)}).", given);
            return DeviceMap.Load(given).Measure(checkpoint, dtype);
        }
        var options = new DeviceMapOptions
        {
            MaxMemory = maxMemory,
            Strategy = DeviceMapStrategies.Parse(mapPathOrStrategy),
            DType = dtype,
            // A measured budget is everything free: keep back what running needs besides the weights.
            Reserve = maxMemory is null ? RunReserve(checkpoint, dtype, contextTokens) : 0,
        };
        return DeviceMapPlanner.Plan(checkpoint, options);
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
        return RuntimeBaselineBytes + estimate.KvCacheBytes + estimate.ActivationBytes;
    }

    /// <summary>Host memory a run may use: what this process can still get (container limits included).</summary>
    public static long AvailableHostBytes() => SystemMemory.AvailableBytes();
}
