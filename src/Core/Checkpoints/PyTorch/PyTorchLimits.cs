namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// Bounds applied while reading a PyTorch archive, so that a hostile file cannot make BigModel allocate, loop or
/// nest in proportion to a number it chose. The defaults are far above what torch.save writes for the largest
/// published checkpoints (a 70B-parameter state dict has a data.pkl of well under 1 MB and a few thousand entries).
/// </summary>
public sealed record PyTorchLimits
{
    /// <summary>Largest data.pkl read into memory (uncompressed).</summary>
    public long MaxPickleBytes { get; init; } = 256L << 20;

    /// <summary>Largest zip central directory read into memory.</summary>
    public long MaxCentralDirectoryBytes { get; init; } = 256L << 20;

    /// <summary>Most entries the archive may declare.</summary>
    public int MaxZipEntries { get; init; } = 1_000_000;

    /// <summary>Most pickle opcodes executed.</summary>
    public long MaxOperations { get; init; } = 200_000_000;

    /// <summary>
    /// Most units of repeatable work: container items copied by tuple/list/dict building and characters hashed as
    /// dict keys or encoded, so memoised containers and strings cannot be reused over and over.
    /// </summary>
    public long MaxCopiedItems { get; init; } = 200_000_000;

    /// <summary>Most distinct memo slots.</summary>
    public int MaxMemoEntries { get; init; } = 4_000_000;

    /// <summary>Most values on the pickle stack at once (all mark frames together).</summary>
    public int MaxStackItems { get; init; } = 4_000_000;

    /// <summary>Most MARKs open at once.</summary>
    public int MaxMarkDepth { get; init; } = 10_000;

    /// <summary>Longest string, bytes or text line one opcode may carry.</summary>
    public int MaxStringBytes { get; init; } = 64 << 20;

    /// <summary>Most tensors one archive may hold.</summary>
    public int MaxTensors { get; init; } = 1_000_000;

    /// <summary>Most dimensions a tensor may have (torch's own limit is 64).</summary>
    public int MaxRank { get; init; } = 64;

    /// <summary>Deepest nesting of dicts and lists followed when flattening the state dict into dotted names.</summary>
    public int MaxNestingDepth { get; init; } = 64;

    /// <summary>Longest dotted tensor name produced by flattening nested dicts.</summary>
    public int MaxNameLength { get; init; } = 65_536;

    public static PyTorchLimits Default { get; } = new();
}
