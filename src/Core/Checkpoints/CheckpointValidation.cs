using BigModel.Errors;

namespace BigModel.Checkpoints;

/// <summary>How thoroughly <see cref="CheckpointValidator"/> looks.</summary>
public sealed record ValidationOptions
{
    /// <summary>Read every tensor's bytes: count NaN and infinite values in floating-point tensors.</summary>
    public bool Deep { get; init; }

    /// <summary>Compute the SHA-256 of every weight file.</summary>
    public bool Hash { get; init; }

    /// <summary>Treat non-finite values as a problem (they usually mean a corrupt or diverged checkpoint).</summary>
    public bool FailOnNonFinite { get; init; } = true;
}

/// <summary>One thing wrong with a checkpoint.</summary>
public sealed record ValidationProblem(BigModelErrorCode Code, string Message, string? File, string? Tensor, bool IsError)
{
    public string ErrorId => "BigModel." + Code;
    public string Severity => IsError ? "Error" : "Warning";
}

/// <summary>NaN and infinity counts of one tensor (deep validation).</summary>
public sealed record TensorValueCheck(string Tensor, DType DType, long Elements, long NaNCount, long InfinityCount)
{
    public bool IsFinite => NaNCount == 0 && InfinityCount == 0;
}

/// <summary>SHA-256 of one weight file.</summary>
public sealed record FileHash(string File, long Length, string Sha256);

/// <summary>The outcome of validating a checkpoint.</summary>
public sealed record CheckpointValidationResult
{
    public required string Path { get; init; }
    public CheckpointFormat? Format { get; init; }
    public int TensorCount { get; init; }
    public long ParameterCount { get; init; }
    public long ByteLength { get; init; }
    public bool Deep { get; init; }
    public long BytesRead { get; init; }
    public IReadOnlyList<ValidationProblem> Problems { get; init; } = [];
    public IReadOnlyList<TensorValueCheck> NonFiniteTensors { get; init; } = [];
    public IReadOnlyList<FileHash> Hashes { get; init; } = [];

    /// <summary>True when no problem is an error (warnings allowed).</summary>
    public bool IsValid => Problems.All(p => !p.IsError);

    public int ErrorCount => Problems.Count(p => p.IsError);
    public int WarningCount => Problems.Count(p => !p.IsError);
}

/// <summary>Progress of a deep validation.</summary>
public readonly record struct ValidationProgress(long BytesDone, long BytesTotal, string? CurrentTensor);
