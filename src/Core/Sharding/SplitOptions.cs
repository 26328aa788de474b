using BigModel.Checkpoints;
using BigModel.IO;

namespace BigModel.Sharding;

/// <summary>How <see cref="CheckpointSplitter"/> reshards a checkpoint.</summary>
public sealed record SplitOptions
{
    /// <summary>Largest shard in bytes (a tensor larger than this gets a shard of its own). Default 5GB, as huggingface_hub.</summary>
    public long MaxShardSize { get; init; } = ShardPlanner.DefaultMaxShardSize;

    /// <summary>Float dtype to convert F64/F32/F16/BF16 tensors to (F32, F16 or BF16); null keeps every dtype.</summary>
    public DType? DType { get; init; }

    /// <summary>Replace an existing destination (only once the new one is complete and verified).</summary>
    public bool Force { get; init; }

    /// <summary>Bytes read or written per I/O call; memory use is about three times this. At least 64 KiB.</summary>
    public int ChunkBytes { get; init; } = 8 << 20;

    /// <summary>
    /// Refuse to start when the destination's file system reports less free space than the output needs. Turn off
    /// for file systems that under-report (compressed or network ones); a full disk is still reported as DiskFull.
    /// </summary>
    public bool CheckFreeSpace { get; init; } = true;

    /// <summary>Options from what a user types: a size such as "5GB" or "2GiB", and an optional dtype name.</summary>
    public static SplitOptions Parse(string maxShardSize, string? dtype = null, bool force = false) => new()
    {
        MaxShardSize = ByteSize.Parse(maxShardSize, "MaxShardSize"),
        DType = string.IsNullOrWhiteSpace(dtype) ? null : DTypes.Parse(dtype),
        Force = force,
    };
}
