using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using BigModel.Errors;
using Microsoft.Win32.SafeHandles;
using TorchSharp;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// Hands each block its weights when its turn comes. Resident weights are loaded once; everything else is brought
/// in per use: by a background thread that runs a bounded number of blocks ahead of the computation (prefetch), or
/// inline when the block is needed (synchronous). The blocks are visited in the same cyclic order on every forward
/// pass, so the prefetcher simply walks that cycle; a pass that ends early makes it start over where asked.
/// </summary>
internal sealed class WeightPipeline : IDisposable
{
    private readonly WeightPlan _plan;
    private readonly WeightReader _reader;
    private readonly InferenceOptions _options;
    private readonly int[] _offloaded;              // block indexes that need work per use, in forward order
    private readonly Dictionary<int, int> _cyclePosition = new();
    private readonly Dictionary<string, CudaCopyStream> _copiers = new(StringComparer.Ordinal);
    private readonly StagingRing? _ring;
    private readonly Dictionary<string, SafeFileHandle?> _unbuffered = new(StringComparer.Ordinal); // null: the file system offers none
    private readonly HashSet<int> _persistent;   // blocks whose weights are all resident: their tensors live as long as the session
    private Prefetcher? _prefetcher;
    private bool _disposed;

    public WeightPipeline(WeightPlan plan, WeightReader reader, InferenceOptions options)
    {
        _plan = plan;
        _reader = reader;
        _options = options;
        _offloaded = plan.Routes.Where(r => r.NeedsWork).Select(r => r.Block.Index).ToArray();
        _persistent = plan.Routes.Where(r => !r.NeedsWork && r.Block.Tensors.All(t => plan.Slots[t.Source.Name].Mode == SlotMode.Resident))
            .Select(r => r.Block.Index).ToHashSet();
        for (int i = 0; i < _offloaded.Length; i++) _cyclePosition[_offloaded[i]] = i;
        _ring = CreateRing();
    }

    /// <summary>The ring streamed blocks are read into, when any block streams weights it can read as stored.</summary>
    private StagingRing? CreateRing()
    {
        if (_plan.StagingType is not ScalarType type || _plan.StagingBytes == 0) return null;
        bool pinned = _plan.Routes.Any(r => r.Reads is not null && r.Compute.Kind == WeightLocationKind.Cuda);
        return new StagingRing(type, _plan.StagingBytes, pinned);
    }

    /// <summary>Time the computation spent waiting for prefetched blocks.</summary>
    public TimeSpan WaitTime { get; private set; }

    /// <summary>Blocks brought in since the session opened.</summary>
    public long BlocksPrepared => Interlocked.Read(ref _blocksPrepared);

    private long _blocksPrepared;

    /// <summary>Materialises every resident weight and creates the mapped views. Call once, before the first forward.</summary>
    public void LoadResident(IProgress<InferenceLoadProgress>? progress, CancellationToken cancel)
    {
        long total = _plan.Slots.Values.Where(s => s.Mode is SlotMode.Resident or SlotMode.Pinned).Sum(s => s.Source.ByteLength);
        long done = 0;
        int blocksDone = 0;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        foreach (var route in _plan.Routes)
        {
            cancel.ThrowIfCancellationRequested();
            progress?.Report(new InferenceLoadProgress("Loading", route.Block.Name, blocksDone, _plan.Routes.Count, done, total));
            foreach (var bt in route.Block.Tensors)
            {
                var slot = _plan.Slots[bt.Source.Name];
                if (slot.Tensor is not null) continue;
                switch (slot.Mode)
                {
                    case SlotMode.Resident:
                        // Under a memory limit the file pages read to load would crowd out the window until reclaimed.
                        slot.Tensor = _reader.Load(slot.Source, TorchTypes.DeviceOf(slot.Location), dropFromCache: _options.ReleasesDiskPages);
                        done += slot.Source.ByteLength;
                        break;
                    case SlotMode.Pinned:
                        slot.Tensor = _reader.Load(slot.Source, CPU, pin: true, dropFromCache: _options.ReleasesDiskPages);
                        done += slot.Source.ByteLength;
                        break;
                    case SlotMode.Mapped:
                        slot.Tensor = _reader.MappedView(slot.Source)
                            ?? throw new BigModelException(BigModelErrorCode.InferenceFailed, "a weight planned as mapped cannot be viewed.", slot.Source.File, tensor: slot.Source.Name);
                        if (!UsedWhole(slot)) _reader.Maps.AdviseLookups(slot.Source);
                        break;
                }
            }
            blocksDone++;
        }
        progress?.Report(new InferenceLoadProgress("Loaded", null, blocksDone, _plan.Routes.Count, done, total));
    }

    private bool UsedWhole(WeightSlot slot) =>
        _plan.Routes.Any(r => r.Block.Tensors.Any(t => !t.Gathered && ReferenceEquals(_plan.Slots[t.Source.Name], slot)));

    /// <summary>The weights of block <paramref name="index"/> on its compute device; dispose them after the block ran.</summary>
    public BlockWeights Acquire(int index, CancellationToken cancel)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var route = _plan.Routes[index];
        if (!route.NeedsWork) return Assemble(route, null, null);
        if (!_options.Prefetch)
        {
            var prepared = Prepare(route, pageIn: false, cancel);
            FinishOrRelease(prepared, null);
            return Assemble(route, prepared, null);
        }
        var clock = Stopwatch.StartNew();
        var item = TakePrefetched(index, cancel);
        var owner = _prefetcher!;
        FinishOrRelease(item, owner.Release);
        WaitTime += clock.Elapsed;
        return Assemble(route, item, owner.Release);
    }

    private void FinishOrRelease(Prepared prepared, Action? release)
    {
        try
        {
            Finish(prepared);
        }
        catch
        {
            prepared.Dispose();
            release?.Invoke();
            throw;
        }
    }

    private Prepared TakePrefetched(int index, CancellationToken cancel)
    {
        int position = _cyclePosition[index];
        if (_prefetcher is null || _prefetcher.NextPosition != position)
        {
            _prefetcher?.Dispose();
            _prefetcher = new Prefetcher(this, position);
        }
        var item = _prefetcher.Take(cancel);
        if (item.Failure is not null)
        {
            _prefetcher.Dispose();
            _prefetcher = null;
            item.Failure.Throw();
        }
        return item;
    }

    private BlockWeights Assemble(BlockRoute route, Prepared? prepared, Action? release)
    {
        var device = TorchTypes.DeviceOf(route.Compute);
        var tensors = new Dictionary<string, Tensor>(route.Block.Tensors.Count, StringComparer.Ordinal);
        foreach (var bt in route.Block.Tensors)
        {
            if (prepared?.Tensors.TryGetValue(bt.Key, out var t) == true) tensors[bt.Key] = t;
            else tensors[bt.Key] = _plan.Slots[bt.Source.Name].Tensor
                ?? throw new BigModelException(BigModelErrorCode.InferenceFailed, "a weight was used before it was loaded.", bt.Source.File, tensor: bt.Source.Name);
        }
        return new BlockWeights(route.Block, device, tensors, () =>
        {
            prepared?.Dispose();
            if (_options.ReleasesDiskPages) ReleaseMappedPages(route);
            release?.Invoke();
        }, persistent: _persistent.Contains(route.Block.Index));
    }

    private void ReleaseMappedPages(BlockRoute route)
    {
        foreach (var bt in route.Block.Tensors)
        {
            var slot = _plan.Slots[bt.Source.Name];
            if (slot.Mode == SlotMode.Mapped && !IsNeededSoon(slot, route)) _reader.Maps.Release(slot.Source);
        }
    }

    // A weight shared with another block (a tied head and its embedding) stays cached when that block comes up
    // within the prefetch window, counting on into the next forward pass.
    private bool IsNeededSoon(WeightSlot slot, BlockRoute used)
    {
        int count = _plan.Routes.Count;
        return _plan.Routes.Any(r => r != used
            && (r.Block.Index - used.Block.Index + count) % count <= _options.PrefetchDepth
            && r.Block.Tensors.Any(t => ReferenceEquals(_plan.Slots[t.Source.Name], slot)));
    }

    /// <summary>Brings in what one use of the block needs. Runs on the prefetch thread, or inline when synchronous.</summary>
    private Prepared Prepare(BlockRoute route, bool pageIn, CancellationToken cancel)
    {
        using var noGrad = no_grad();
        // Temporaries stay referenced until the scope ends; everything kept is detached from it (TorchTypes.Own).
        using var scope = NewDisposeScope();
        var device = TorchTypes.DeviceOf(route.Compute);
        var prepared = new Prepared(route.Block.Index);
        try
        {
            // Reading one block at a time keeps one block's I/O in flight; announcing the next block first lets
            // the storage work on both while this one's pages are waited for.
            if (pageIn && _options.PageIn == PageInMethod.Read) AdviseNext(route);
            if (route.Reads is not null) ReadStaged(route, prepared, device, cancel);
            foreach (var bt in route.Block.Tensors)
            {
                var slot = _plan.Slots[bt.Source.Name];
                if (prepared.Tensors.ContainsKey(bt.Key) || prepared.Copies.Any(c => c.Key == bt.Key)) continue;
                switch (slot.Mode)
                {
                    case SlotMode.Mapped when !WeightPlan.SameDevice(WeightLocation.Cpu, route.Compute):
                        // A gathered table is looked up on the host; a dense use on a GPU (a tied head) needs a copy there.
                        if (!bt.Gathered) prepared.Tensors[bt.Key] = TorchTypes.Own(slot.Tensor!.to(device, copy: true));
                        break;
                    case SlotMode.Mapped:
                        if (pageIn && !bt.Gathered) _reader.Maps.PageIn(slot.Source, _options.PageIn);
                        break;
                    case SlotMode.Streamed:
                    {
                        bool onCuda = route.Compute.Kind == WeightLocationKind.Cuda;
                        var host = _reader.Load(slot.Source, CPU, pin: onCuda, dropFromCache: _options.ReleasesDiskPages);
                        if (!onCuda)
                        {
                            prepared.Tensors[bt.Key] = host;
                            break;
                        }
                        var copier = Copier(device);
                        prepared.Copies.Add((bt.Key, copier, copier.Start(host, ownsSource: true)));
                        break;
                    }
                    case SlotMode.Pinned:
                    {
                        var copier = Copier(device);
                        prepared.Copies.Add((bt.Key, copier, copier.Start(slot.Tensor!, ownsSource: false)));
                        break;
                    }
                    default:
                        if (!WeightPlan.SameDevice(slot.Location, route.Compute))
                            prepared.Tensors[bt.Key] = TorchTypes.Own(slot.Tensor!.to(device, copy: true));
                        break;
                }
            }
            Interlocked.Increment(ref _blocksPrepared);
            return prepared;
        }
        catch
        {
            prepared.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads the block's staged weights into a region of the ring (waiting for ring space, in block order) and
    /// hands out views of it; on a GPU the views are copied there and the region is handed back with the block.
    /// </summary>
    private void ReadStaged(BlockRoute route, Prepared prepared, Device device, CancellationToken cancel)
    {
        var reads = route.Reads!;
        var ring = _ring!;
        prepared.Region = ring.Take(reads.RegionBytes, cancel);
        foreach (var extent in reads.Extents)
        {
            var (handle, unbuffered) = FileFor(extent.File);
            BlockReads.Read(handle, extent, ring.Address(prepared.Region, extent.RegionOffset));
            if (!unbuffered && _options.ReleasesDiskPages) PageIn.DropFromCache(handle, extent.FileOffset, extent.Length);
        }
        bool onCuda = route.Compute.Kind == WeightLocationKind.Cuda;
        foreach (var w in reads.Weights)
        {
            var view = ring.View(prepared.Region, w.RegionOffset, w.Source.Shape.ToArray(), w.Source.ElementCount);
            if (!onCuda)
            {
                prepared.Tensors[w.Key] = view;
                continue;
            }
            var copier = Copier(device);
            prepared.Copies.Add((w.Key, copier, copier.Start(view, ownsSource: true)));
        }
    }

    /// <summary>
    /// The read handle for <paramref name="file"/>: with <see cref="DiskAccess.Direct"/> an unbuffered one where the
    /// file system offers it (opened once per session), otherwise the reader's own cached handle.
    /// </summary>
    private (SafeFileHandle Handle, bool Unbuffered) FileFor(string file)
    {
        if (_options.DiskAccess == DiskAccess.Direct)
        {
            lock (_unbuffered)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (!_unbuffered.TryGetValue(file, out var direct))
                {
                    // The same checks as every other read: an existing regular file, never a pipe or device.
                    IO.ReadableFile.RequireRegular(file, "the weight file");
                    _unbuffered[file] = direct = IO.UnbufferedFile.TryOpen(file);
                }
                if (direct is not null) return (direct, true);
            }
        }
        return (_reader.Maps.Handle(file), false);
    }

    private void AdviseNext(BlockRoute route)
    {
        int next = _offloaded[(_cyclePosition[route.Block.Index] + 1) % _offloaded.Length];
        foreach (var bt in _plan.Routes[next].Block.Tensors)
        {
            var slot = _plan.Slots[bt.Source.Name];
            if (slot.Mode == SlotMode.Mapped && !bt.Gathered) _reader.Maps.PageIn(slot.Source, PageInMethod.WillNeed);
        }
    }

    /// <summary>Waits for the block's device copies to land (on the computing thread).</summary>
    private void Finish(Prepared prepared)
    {
        foreach (var (key, copier, copy) in prepared.Copies)
        {
            copier.Complete(copy);
            prepared.Tensors[key] = copy.Result;
        }
        prepared.Copies.Clear();
    }

    private CudaCopyStream Copier(Device device)
    {
        lock (_copiers)
        {
            var key = device.ToString();
            if (!_copiers.TryGetValue(key, out var copier)) _copiers[key] = copier = new CudaCopyStream(device);
            return copier;
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _prefetcher?.Dispose();
        _prefetcher = null;
        foreach (var slot in _plan.Slots.Values)
        {
            slot.Tensor?.Dispose();
            slot.Tensor = null;
        }
        lock (_copiers)
        {
            foreach (var c in _copiers.Values) c.Dispose();
            _copiers.Clear();
        }
        _ring?.Dispose();
        lock (_unbuffered)
        {
            foreach (var handle in _unbuffered.Values) handle?.Dispose();
            _unbuffered.Clear();
        }
    }

    /// <summary>What one use of a block brought in, freed when the block is handed back.</summary>
    private sealed class Prepared(int block) : IDisposable
    {
        public int Block { get; } = block;
        public Dictionary<string, Tensor> Tensors { get; } = new(StringComparer.Ordinal);
        public List<(string Key, CudaCopyStream Copier, CudaCopyStream.PendingCopy Copy)> Copies { get; } = new();
        public ExceptionDispatchInfo? Failure { get; init; }
        public StagingRing.Region? Region { get; set; }

        public void Dispose()
        {
            // A device buffer must not be freed while a copy into it is still in flight.
            foreach (var (_, copier, copy) in Copies)
            {
                copier.Complete(copy);
                copy.Result.Dispose();
            }
            Copies.Clear();
            foreach (var t in Tensors.Values) t.Dispose();
            Tensors.Clear();
            // Views are gone; the ring space can take the next block.
            Region?.Dispose();
            Region = null;
        }
    }

    /// <summary>
    /// The background thread: walks the cycle of offloaded blocks from a start position, never holding more than
    /// depth + 1 prepared blocks (the one computing included) at once.
    /// </summary>
    private sealed class Prefetcher : IDisposable
    {
        private readonly WeightPipeline _owner;
        private readonly BlockingCollection<Prepared> _ready = new();
        private readonly SemaphoreSlim _slots;
        private readonly CancellationTokenSource _stop = new();
        private readonly Thread _thread;
        private int _nextPosition;

        public Prefetcher(WeightPipeline owner, int start)
        {
            _owner = owner;
            _nextPosition = start;
            _slots = new SemaphoreSlim(owner._options.PrefetchDepth + 1);
            int position = start;
            _thread = new Thread(() => Run(position)) { IsBackground = true, Name = "BigModel prefetch" };
            _thread.Start();
        }

        /// <summary>The cycle position of the block the next <see cref="Take"/> returns.</summary>
        public int NextPosition => _nextPosition;

        public Prepared Take(CancellationToken cancel)
        {
            Prepared item;
            try
            {
                item = _ready.Take(cancel);
            }
            catch (InvalidOperationException)
            {
                throw new BigModelException(BigModelErrorCode.InferenceFailed, "the prefetch thread stopped unexpectedly.");
            }
            _nextPosition = (_nextPosition + 1) % _owner._offloaded.Length;
            return item;
        }

        public void Release()
        {
            try
            {
                _slots.Release();
            }
            catch (SemaphoreFullException)
            {
            }
        }

        private void Run(int position)
        {
            var stop = _stop.Token;
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    _slots.Wait(stop);
                    var route = _owner._plan.Routes[_owner._offloaded[position]];
                    Prepared item;
                    try
                    {
                        item = _owner.Prepare(route, pageIn: true, stop);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        _ready.Add(new Prepared(route.Block.Index) { Failure = ExceptionDispatchInfo.Capture(e) });
                        return;
                    }
                    _ready.Add(item);
                    position = (position + 1) % _owner._offloaded.Length;
                }
            }
            catch (OperationCanceledException)
            {
            }
            finally
            {
                _ready.CompleteAdding();
            }
        }

        public void Dispose()
        {
            _stop.Cancel();
            _thread.Join();
            while (_ready.TryTake(out var item)) item.Dispose();
            _ready.Dispose();
            _stop.Dispose();
        }
    }
}
