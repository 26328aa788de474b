namespace BigModel.Checkpoints;

/// <summary>
/// Bounds applied to anything read from a safetensors header, so that a hostile file cannot make BigModel
/// allocate, loop or recurse in proportion to a number it chose.
/// </summary>
public sealed record SafetensorsLimits
{
    /// <summary>The reference implementation's limit on the JSON header: 100,000,000 bytes.</summary>
    public long MaxHeaderBytes { get; init; } = 100_000_000;

    /// <summary>Most tensors one file may declare.</summary>
    public int MaxTensors { get; init; } = 1_000_000;

    /// <summary>Most dimensions a tensor may have (torch's own limit is 64).</summary>
    public int MaxRank { get; init; } = 64;

    /// <summary>Most entries in <c>__metadata__</c>.</summary>
    public int MaxMetadataEntries { get; init; } = 100_000;

    public static SafetensorsLimits Default { get; } = new();
}
