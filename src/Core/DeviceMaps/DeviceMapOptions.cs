using BigModel.Checkpoints;
using BigModel.IO;

namespace BigModel.DeviceMaps;

/// <summary>What <see cref="DeviceMapPlanner"/> plans for. Every setting has Accelerate's default.</summary>
public sealed class DeviceMapOptions
{
    /// <summary>Memory per device; null measures this machine (free CUDA memory, available RAM), as Accelerate does.</summary>
    public MaxMemory? MaxMemory { get; init; }

    public DeviceMapStrategy Strategy { get; init; } = DeviceMapStrategy.Auto;

    /// <summary>Globs of module names to keep whole (<c>model.layers.*</c>), in addition to the architecture's blocks.</summary>
    public IReadOnlyList<string> NoSplit { get; init; } = [];

    /// <summary>Whether the architecture's no-split blocks (decoder layers, BERT layers, GPT-2 blocks) apply.</summary>
    public bool UseArchitectureNoSplit { get; init; } = true;

    /// <summary>Groups of tensor names sharing one storage, in addition to the head tied to the embedding.</summary>
    public IReadOnlyList<IReadOnlyList<string>> TiedParameters { get; init; } = [];

    /// <summary>Whether the output head shares the input embedding; null reads tie_word_embeddings from the config (with the family's default).</summary>
    public bool? TieWordEmbeddings { get; init; }

    /// <summary>The dtype weights are loaded in: float tensors wider than it count at its width.</summary>
    public DType? DType { get; init; }

    /// <summary>Per-tensor dtypes (Accelerate's special_dtypes, e.g. modules kept in float32).</summary>
    public IReadOnlyDictionary<string, DType>? SpecialDTypes { get; init; }

    /// <summary>Bytes held back on every device except disk (activations, KV cache, the runtime itself).</summary>
    public long Reserve { get; init; }

    /// <summary>Accelerate's offload_buffers: offload buffers with their modules instead of expecting them on the GPU.</summary>
    public bool OffloadBuffers { get; init; }

    /// <summary>Accelerate's fallback_allocation: fill a device that nothing fits on with any smaller module.</summary>
    public bool FallbackAllocation { get; init; }

    /// <summary>Collapse subtrees placed on one device into one key (Accelerate's clean_result).</summary>
    public bool Clean { get; init; } = true;

    /// <summary>Tensor names that are buffers, beyond <see cref="ModuleTree.WellKnownBufferNames"/>.</summary>
    public IReadOnlyCollection<string> BufferNames { get; init; } = [];

    /// <summary>Measures the machine when <see cref="MaxMemory"/> is null; <see cref="DeviceMaps.MaxMemory.Detect"/> by default.</summary>
    public Func<ICollection<string>, MaxMemory>? DetectMemory { get; init; }

    /// <summary>
    /// Options from the text that command lines and build files carry, each checked with a typed error; a null or blank
    /// value keeps the default.
    /// </summary>
    /// <param name="maxMemory">The budget, already read (null measures the machine).</param>
    /// <param name="strategy">auto, sequential, balanced or balanced_low_0.</param>
    /// <param name="dtype">The dtype weights are loaded in (float16, bfloat16, F32...).</param>
    /// <param name="reserve">A size held back on every device, e.g. 2GiB.</param>
    /// <param name="noSplit">Module-name globs to keep whole.</param>
    /// <param name="tiedParameters">Groups of tensor names sharing storage.</param>
    public static DeviceMapOptions FromText(MaxMemory? maxMemory, string? strategy = null, string? dtype = null, string? reserve = null,
        IReadOnlyList<string>? noSplit = null, IReadOnlyList<IReadOnlyList<string>>? tiedParameters = null) => new()
    {
        MaxMemory = maxMemory,
        Strategy = string.IsNullOrWhiteSpace(strategy) ? DeviceMapStrategy.Auto : DeviceMapStrategies.Parse(strategy),
        DType = string.IsNullOrWhiteSpace(dtype) ? null : DTypes.Parse(dtype),
        Reserve = string.IsNullOrWhiteSpace(reserve) ? 0 : ByteSize.Parse(reserve, "Reserve"),
        NoSplit = noSplit ?? [],
        TiedParameters = tiedParameters ?? [],
    };
}
