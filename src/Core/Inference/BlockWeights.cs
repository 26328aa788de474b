using BigModel.Errors;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// The weights of one block, ready on the device the block computes on, for the duration of its forward step.
/// Disposing hands the block back: weights brought in for this use only are freed, freeing room to prefetch more.
/// </summary>
internal sealed class BlockWeights : IDisposable
{
    private readonly ModelBlock _block;
    private readonly IReadOnlyDictionary<string, Tensor> _tensors;
    private Action? _release;

    public BlockWeights(ModelBlock block, Device device, IReadOnlyDictionary<string, Tensor> tensors, Action? release, bool persistent = false)
    {
        _block = block;
        Device = device;
        _tensors = tensors;
        _release = release;
        Persistent = persistent;
    }

    /// <summary>The device the block computes on; its inputs must be moved there.</summary>
    public Device Device { get; }

    /// <summary>
    /// True when these tensors are the block's weights in memory for the whole session (every one resident, nothing
    /// brought in per use), so a reference to them may be kept and read past this use without touching storage;
    /// false for staged copies that are reused and for mapped views whose pages may be dropped.
    /// </summary>
    public bool Persistent { get; }

    public Tensor this[string key] => _tensors.TryGetValue(key, out var t)
        ? t
        : throw new BigModelException(BigModelErrorCode.InferenceFailed, $"block '{_block.Name}' has no weight '{key}'.");

    /// <summary>The weight, or null for optional weights (biases) the checkpoint does not have.</summary>
    public Tensor? Optional(string key) => _tensors.GetValueOrDefault(key);

    public void Dispose()
    {
        var release = Interlocked.Exchange(ref _release, null);
        release?.Invoke();
    }
}
