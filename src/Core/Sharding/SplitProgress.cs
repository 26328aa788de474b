namespace BigModel.Sharding;

/// <summary>The steps of a split, in order.</summary>
public enum SplitPhase
{
    /// <summary>Taking the destination's lock, tidying earlier leftovers, checking free space.</summary>
    Preparing,
    /// <summary>Writing shard files.</summary>
    WritingShards,
    /// <summary>Writing model.safetensors.index.json.</summary>
    WritingIndex,
    /// <summary>Copying config, tokenizer and other non-weight files.</summary>
    CopyingFiles,
    /// <summary>Re-reading what was written.</summary>
    Verifying,
    /// <summary>Moving the new folder into place.</summary>
    Committing,
    /// <summary>Done: the destination is complete.</summary>
    Completed,
}

/// <summary>A progress report: bytes of tensor data written so far of the total, and the rate since the start.</summary>
/// <param name="Phase">The current step.</param>
/// <param name="BytesDone">Tensor bytes written (after any dtype conversion).</param>
/// <param name="BytesTotal">Tensor bytes to write in all (the index's total_size).</param>
/// <param name="BytesPerSecond">Average rate of <paramref name="BytesDone"/> since writing began.</param>
/// <param name="Elapsed">Time since the split started.</param>
/// <param name="Shard">1-based number of the shard being written (0 before the first).</param>
/// <param name="ShardCount">Number of shards.</param>
/// <param name="File">Name of the file being written, if any.</param>
/// <param name="Tensor">Name of the tensor being copied, if any.</param>
public sealed record SplitProgress(SplitPhase Phase, long BytesDone, long BytesTotal, double BytesPerSecond, TimeSpan Elapsed,
    int Shard, int ShardCount, string? File, string? Tensor)
{
    /// <summary>Share done, 0 to 1.</summary>
    public double Fraction => BytesTotal <= 0 ? (Phase == SplitPhase.Completed ? 1 : 0) : Math.Min(1.0, (double)BytesDone / BytesTotal);

    /// <summary>Estimated time left for the tensor data at the current rate; null until a rate is known.</summary>
    public TimeSpan? Remaining => BytesPerSecond > 0 && BytesTotal >= BytesDone
        ? TimeSpan.FromSeconds((BytesTotal - BytesDone) / BytesPerSecond)
        : null;
}
