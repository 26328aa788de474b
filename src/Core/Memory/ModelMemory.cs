using BigModel.Errors;
using BigModel.IO;

namespace BigModel.Memory;

/// <summary>
/// How much memory a model needs in one precision. <see cref="TotalBytes"/>, <see cref="LargestLayerBytes"/> and
/// <see cref="TrainingAdamBytes"/> mean what accelerate estimate-memory means by them; <see cref="InferenceBytes"/>
/// adds what running it costs on top of the weights.
/// </summary>
public sealed record ModelMemory
{
    public required string Model { get; init; }
    public required MemoryDType DType { get; init; }
    public required long ParameterCount { get; init; }

    /// <summary>Weights loaded in <see cref="DType"/>.</summary>
    public required long TotalBytes { get; init; }

    /// <summary>The biggest block that must sit on one device: the largest no-split block or leaf module.</summary>
    public required long LargestLayerBytes { get; init; }

    public required string LargestLayer { get; init; }

    /// <summary>Adam training peak as Accelerate estimates it (4× fp32 weights for float32, 2× for 16-bit); null for int8/int4.</summary>
    public long? TrainingAdamBytes { get; init; }

    /// <summary>Keys and values of every layer for <see cref="ContextLength"/> × <see cref="BatchSize"/> tokens.</summary>
    public required long KvCacheBytes { get; init; }

    /// <summary>Transient activations of one layer's forward pass over the whole context (see <see cref="ModelMemoryEstimator"/>).</summary>
    public required long ActivationBytes { get; init; }

    /// <summary>Weights + KV cache + activations.</summary>
    public long InferenceBytes => TotalBytes + KvCacheBytes + ActivationBytes;

    public required int ContextLength { get; init; }
    public required int BatchSize { get; init; }

    /// <summary>What the estimate could not include, e.g. a missing config.json.</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];

    /// <summary>
    /// Throws <see cref="BigModelErrorCode.MemoryBudgetExceeded"/>, with the figures behind it, when running the model
    /// (<see cref="InferenceBytes"/>) needs more than <paramref name="budget"/> bytes.
    /// </summary>
    /// <param name="budget">The budget in bytes.</param>
    /// <param name="budgetText">The budget as the user wrote it (8GiB), for the message.</param>
    public void ThrowIfOver(long budget, string? budgetText = null)
    {
        if (InferenceBytes <= budget) return;
        throw new BigModelException(BigModelErrorCode.MemoryBudgetExceeded, string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"running it in {DType} needs {ByteSize.Format(InferenceBytes)} ({InferenceBytes:N0} bytes: weights {TotalBytes:N0} + KV cache {KvCacheBytes:N0} + activations {ActivationBytes:N0}), over the budget of {budgetText ?? ByteSize.Format(budget)}."),
            Model);
    }
}
