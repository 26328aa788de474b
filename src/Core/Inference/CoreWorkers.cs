using System.Diagnostics;
using System.Runtime.Intrinsics.X86;

namespace BigModel.Inference;

/// <summary>
/// Work split over <see cref="CoreWorkers"/>: each participant that joins a dispatch runs <see cref="Execute"/>
/// once, claiming pieces until none are left. The dispatching thread (participant 0) always takes part; the others
/// may not, so no piece may belong to a particular participant.
/// </summary>
internal interface IParallelWork
{
    /// <summary>Claims and runs pieces as participant <paramref name="worker"/> (0 is the dispatching thread).</summary>
    void Execute(int worker);
}

/// <summary>
/// Work the other participants run in the background while the dispatching thread goes on (see
/// <see cref="CoreWorkers.Start"/>): it claims pieces until none are left or <see cref="Stop"/> is called, which it
/// must notice within a piece.
/// </summary>
internal interface IBackgroundWork : IParallelWork
{
    void Stop();
}

/// <summary>
/// One thread per core the computation may use, kept alive between calls, so that a matrix-vector product of a
/// tenth of a millisecond is not dominated by waking pool threads. The dispatching thread takes part as worker 0.
/// After a job, a worker spins for <see cref="SpinTime"/> waiting for the next one (a decode step issues one
/// every few tens of microseconds) and then parks on a semaphore, so an idle model costs no CPU.
/// Work is claimed, not assigned (see <see cref="IParallelWork"/>), and a job is closed once the dispatching thread
/// finds nothing left to claim: a worker that arrives later (its core was busy with another process) skips the job
/// instead of being waited for, so a loaded machine slows a call down to one core's speed at worst, never to the
/// scheduler's time slice. Dispatches are serialised: one job runs at a time.
/// </summary>
internal sealed class CoreWorkers : IDisposable
{
    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _wake;
    private readonly int[] _parked;
    private readonly object _dispatch = new();
    private readonly long _spinTicks;
    private IParallelWork? _work;
    private IBackgroundWork? _background;
    private long _generation;
    private long _closed;
    private int _active;
    private volatile bool _stopping;
    private Exception? _failure;

    public CoreWorkers(int threads, TimeSpan? spinTime = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        Count = threads;
        SpinTime = spinTime ?? TimeSpan.FromMilliseconds(1);
        _spinTicks = (long)(SpinTime.TotalSeconds * Stopwatch.Frequency);
        _threads = new Thread[threads - 1];
        _wake = new SemaphoreSlim[threads - 1];
        _parked = new int[threads - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            _wake[i] = new SemaphoreSlim(0);
            int index = i + 1;
            _threads[i] = new Thread(() => Loop(index)) { IsBackground = true, Name = $"BigModel core worker {index}" };
            _threads[i].Start();
        }
    }

    /// <summary>Participants per dispatch, the calling thread included.</summary>
    public int Count { get; }

    /// <summary>How long an idle worker polls for the next job before parking.</summary>
    public TimeSpan SpinTime { get; }

    /// <summary>Runs <paramref name="work"/> on every participant and returns when all have finished.</summary>
    public void Run(IParallelWork work)
    {
        lock (_dispatch)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            StopBackground();
            if (_threads.Length == 0)
            {
                work.Execute(0);
                return;
            }
            Dispatch(work);
            Exception? own = null;
            try
            {
                work.Execute(0);
            }
            catch (Exception e)
            {
                own = e;
            }
            Close();
            if (own is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(own);
            if (_failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(_failure);
        }
    }

    /// <summary>
    /// Starts <paramref name="work"/> on the participants other than the calling thread and returns at once; it runs
    /// until its pieces run out or the next <see cref="Run"/>, <see cref="Start"/> or <see cref="Dispose"/> stops it.
    /// For work that only helps the next job along (warming caches), so it is dropped when there are no other
    /// participants, and a failure in it surfaces from the call that stops it.
    /// </summary>
    public void Start(IBackgroundWork work)
    {
        lock (_dispatch)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            StopBackground();
            if (_threads.Length == 0) return;
            _background = work;
            Dispatch(work);
        }
    }

    /// <summary>Stops the background work, if any, and returns when no worker runs it any more.</summary>
    public void Stop()
    {
        lock (_dispatch) StopBackground();
    }

    private void Dispatch(IParallelWork work)
    {
        _work = work;
        _failure = null;
        Interlocked.Increment(ref _generation);
        for (int i = 0; i < _threads.Length; i++)
            if (Interlocked.Exchange(ref _parked[i], 0) == 1) _wake[i].Release();
    }

    /// <summary>
    /// Closes the current job, then waits only for the workers that joined it, which are finishing their last piece.
    /// (Both sides use full fences: a worker either sees the job closed or is counted here.)
    /// </summary>
    private void Close()
    {
        Interlocked.Exchange(ref _closed, Volatile.Read(ref _generation));
        var wait = new SpinWait();
        while (Volatile.Read(ref _active) != 0) wait.SpinOnce(sleep1Threshold: -1);
        _work = null;
    }

    private void StopBackground()
    {
        if (_background is null) return;
        _background.Stop();
        _background = null;
        Close();
        if (_failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(_failure);
    }

    private void Loop(int index)
    {
        int slot = index - 1;
        // Generations start at 0 (none dispatched). A thread that starts late, after a dispatch, must still see that
        // job as new: background work has no other participant to run it. A closed job it skips as usual.
        long seen = 0;
        while (true)
        {
            long idleSince = Stopwatch.GetTimestamp();
            while (Volatile.Read(ref _generation) == seen)
            {
                if (_stopping) return;
                if (Stopwatch.GetTimestamp() - idleSince < _spinTicks)
                {
                    Pause();
                    continue;
                }
                // Announce the park, then look once more: a dispatch that raced with the announcement either saw
                // it (and releases the semaphore) or did not (and this check sees its generation).
                Interlocked.Exchange(ref _parked[slot], 1);
                if (Volatile.Read(ref _generation) != seen || _stopping)
                {
                    if (Interlocked.Exchange(ref _parked[slot], 0) == 0) _wake[slot].Wait();
                }
                else
                {
                    _wake[slot].Wait();
                }
                idleSince = Stopwatch.GetTimestamp();
            }
            if (_stopping) return;
            seen = Volatile.Read(ref _generation);
            Interlocked.Increment(ref _active);
            if (Volatile.Read(ref _closed) < seen)
            {
                try
                {
                    _work!.Execute(index);
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref _failure, e, null);
                }
            }
            Interlocked.Decrement(ref _active);
        }
    }

    private static void Pause()
    {
        if (X86Base.IsSupported) X86Base.Pause();
        else Thread.SpinWait(1);
    }

    public void Dispose()
    {
        lock (_dispatch)
        {
            if (_stopping) return;
            _background?.Stop();
            _stopping = true;
        }
        for (int i = 0; i < _threads.Length; i++)
            if (Interlocked.Exchange(ref _parked[i], 0) == 1) _wake[i].Release();
        foreach (var t in _threads) t.Join();
        foreach (var s in _wake) s.Dispose();
    }
}
