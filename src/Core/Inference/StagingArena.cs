using System.Collections.Concurrent;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// Reusable buffers that offloaded blocks are read into, one per block the prefetch window can hold. Reading each
/// use into fresh allocations would leave the freed memory to the allocator, which keeps much of it: anonymous
/// memory would creep above the window. With the arena it stays exactly the window, allocated once.
/// Each buffer is one tensor of the blocks' weight type; a block's weights are views into it.
/// </summary>
internal sealed class StagingArena : IDisposable
{
    /// <summary>Weights start on 64-byte boundaries inside a buffer, as allocators align them.</summary>
    private const int AlignBytes = 64;

    private readonly ConcurrentBag<Tensor> _free = new();
    private readonly List<Tensor> _all = new();

    public StagingArena(int buffers, ScalarType type, long elements, bool pinned)
    {
        Type = type;
        Elements = elements;
        for (int i = 0; i < buffers; i++)
        {
            var buffer = TorchTypes.Own(empty(elements, type, CPU));
            if (pinned)
            {
                var page = TorchTypes.Own(buffer.pin_memory());
                buffer.Dispose();
                buffer = page;
            }
            _all.Add(buffer);
            _free.Add(buffer);
        }
    }

    public ScalarType Type { get; }

    /// <summary>Elements each buffer holds.</summary>
    public long Elements { get; }

    /// <summary>Bytes all buffers hold together.</summary>
    public long Bytes => _all.Count * Elements * TorchTypes.ElementSize(Type);

    /// <summary>Elements <paramref name="count"/> elements occupy once aligned.</summary>
    public static long Aligned(long count, ScalarType type)
    {
        long perAlign = Math.Max(1, AlignBytes / TorchTypes.ElementSize(type));
        return (count + perAlign - 1) / perAlign * perAlign;
    }

    /// <summary>A free buffer, or null when all are in use (the caller then allocates on its own).</summary>
    public Tensor? Rent() => _free.TryTake(out var buffer) ? buffer : null;

    public void Return(Tensor buffer) => _free.Add(buffer);

    public void Dispose()
    {
        foreach (var b in _all) b.Dispose();
        _all.Clear();
        _free.Clear();
    }
}
