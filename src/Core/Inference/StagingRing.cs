using BigModel.IO;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// One buffer that streamed blocks are read into, used as a ring: the prefetcher takes regions in the order the
/// blocks run, and each region is handed back when its block has run. Reading each use into fresh allocations
/// would leave the freed memory to the allocator, which keeps much of it, and sizing one buffer per block in
/// flight by the largest block would charge the window three output heads where it holds one head and two layers.
/// The ring is allocated once, at the size of the widest run of blocks in flight, with page-aligned regions so
/// unbuffered reads can land in them directly. It holds weights of one type (the streamed weights' main type);
/// weights are views into it.
/// </summary>
internal sealed class StagingRing : IDisposable
{
    private readonly Tensor _buffer;
    private readonly long _base;                    // offset of the first aligned byte in _buffer
    private readonly LinkedList<Region> _live = new(); // in allocation order
    private readonly object _gate = new();
    private long _head;                             // where the next region starts, if it fits
    private bool _disposed;

    public StagingRing(TorchSharp.torch.ScalarType type, long capacity, bool pinned)
    {
        Type = type;
        Capacity = UnbufferedFile.AlignUp(Math.Max(capacity, UnbufferedFile.Alignment));
        var buffer = TorchTypes.Own(empty((Capacity + UnbufferedFile.Alignment) / TorchTypes.ElementSize(type), type, CPU));
        if (pinned)
        {
            var page = TorchTypes.Own(buffer.pin_memory());
            buffer.Dispose();
            buffer = page;
        }
        _buffer = buffer;
        long address = (long)TorchTypes.DataPointer(_buffer);
        _base = UnbufferedFile.AlignUp(address) - address;
    }

    /// <summary>The type of the weights the ring holds.</summary>
    public TorchSharp.torch.ScalarType Type { get; }

    /// <summary>Bytes the ring holds for regions.</summary>
    public long Capacity { get; }

    /// <summary>
    /// A region of <paramref name="length"/> bytes, waiting until the regions taken before it have been handed back
    /// far enough for it to fit. Waiting cannot deadlock: every earlier region belongs to a block that runs (and is
    /// handed back) before the one this region is for.
    /// </summary>
    public Region Take(long length, CancellationToken cancel)
    {
        length = UnbufferedFile.AlignUp(Math.Max(length, 1));
        if (length > Capacity)
            throw new Errors.BigModelException(Errors.BigModelErrorCode.InferenceFailed,
                $"a block needs {length} bytes of staging but the ring holds {Capacity} (the plan sized it wrongly).");
        lock (_gate)
        {
            while (true)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                cancel.ThrowIfCancellationRequested();
                if (TryPlace(length) is long start)
                {
                    var region = new Region(this, start, length);
                    _live.AddLast(region);
                    _head = start + length;
                    return region;
                }
                // Woken by Return; the timeout only bounds how late a cancellation is noticed.
                Monitor.Wait(_gate, 50);
            }
        }
    }

    // Free space is what lies after the newest region up to the end, and before the oldest one from the start.
    private long? TryPlace(long length)
    {
        if (_live.Count == 0) return 0;
        long oldest = _live.First!.Value.Start;
        if (_head > oldest)
        {
            if (Capacity - _head >= length) return _head;
            return oldest >= length ? 0 : null;
        }
        return oldest - _head >= length ? _head : null;
    }

    private void Return(Region region)
    {
        lock (_gate)
        {
            _live.Remove(region);
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>The address of byte <paramref name="offset"/> of <paramref name="region"/>.</summary>
    public IntPtr Address(Region region, long offset) => TorchTypes.DataPointer(_buffer) + (nint)(_base + region.Start + offset);

    /// <summary>
    /// A tensor of <paramref name="shape"/> viewing the region's bytes from <paramref name="offset"/>, a multiple of
    /// the ring type's size.
    /// </summary>
    public Tensor View(Region region, long offset, long[] shape, long elements)
    {
        int size = TorchTypes.ElementSize(Type);
        using var slice = _buffer.narrow(0, (_base + region.Start + offset) / size, elements);
        return TorchTypes.Own(slice.view(shape));
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            Monitor.PulseAll(_gate);
        }
        _buffer.Dispose();
    }

    /// <summary>A part of the ring held for one block's use; disposing hands it back.</summary>
    public sealed class Region(StagingRing ring, long start, long length) : IDisposable
    {
        private int _returned;

        public long Start { get; } = start;
        public long Length { get; } = length;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _returned, 1) == 0) ring.Return(this);
        }
    }
}
