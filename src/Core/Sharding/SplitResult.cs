using BigModel.Checkpoints;

namespace BigModel.Sharding;

/// <summary>What a completed split produced.</summary>
public sealed class SplitResult
{
    internal SplitResult(SplitPlan plan, Checkpoint checkpoint, IReadOnlyList<string> shardFiles, string? indexFile,
        IReadOnlyList<string> copiedFiles, TimeSpan elapsed, bool replacedExisting, IReadOnlyList<string> recovered)
    {
        Plan = plan;
        Checkpoint = checkpoint;
        ShardFiles = shardFiles;
        IndexFile = indexFile;
        CopiedFiles = copiedFiles;
        Elapsed = elapsed;
        ReplacedExisting = replacedExisting;
        RecoveredLeftovers = recovered;
    }

    public SplitPlan Plan { get; }

    /// <summary>The new checkpoint, opened from the destination.</summary>
    public Checkpoint Checkpoint { get; }

    /// <summary>The destination folder.</summary>
    public string Destination => Plan.Destination;

    /// <summary>The file that opens the new checkpoint: the index when sharded, else model.safetensors.</summary>
    public string CheckpointPath => IndexFile ?? ShardFiles[0];

    /// <summary>The weight files written, in shard order.</summary>
    public IReadOnlyList<string> ShardFiles { get; }

    /// <summary>model.safetensors.index.json, or null for a single shard.</summary>
    public string? IndexFile { get; }

    /// <summary>Config, tokenizer and other files copied from the source folder.</summary>
    public IReadOnlyList<string> CopiedFiles { get; }

    /// <summary>Every file written: shards, index, copied files.</summary>
    public IReadOnlyList<string> Files => [.. ShardFiles, .. IndexFile is null ? Array.Empty<string>() : [IndexFile], .. CopiedFiles];

    /// <summary>Bytes of tensor data written (the index's total_size).</summary>
    public long TensorBytes => Plan.TotalSize;

    /// <summary>Bytes of every file written.</summary>
    public long BytesWritten => Plan.Shards.Sum(s => s.FileBytes) + (Plan.IndexBytes?.LongLength ?? 0) + CopiedFiles.Sum(f => new FileInfo(f).Length);

    /// <summary>Wall time of the whole split, verification and move included.</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>Average rate over <see cref="Elapsed"/>.</summary>
    public double BytesPerSecond => Elapsed.TotalSeconds > 0 ? BytesWritten / Elapsed.TotalSeconds : 0;

    /// <summary>True when an existing destination was replaced (-Force).</summary>
    public bool ReplacedExisting { get; }

    /// <summary>Leftovers of interrupted earlier runs that were removed or put back before writing.</summary>
    public IReadOnlyList<string> RecoveredLeftovers { get; }
}
