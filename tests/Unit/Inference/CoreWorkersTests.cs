using BigModel.Inference;

namespace BigModel.Tests.Inference;

/// <summary>The decode kernel's persistent workers: every piece of every job runs exactly once, failures surface.</summary>
public sealed class CoreWorkersTests
{
    /// <summary>Claims pieces 0..count−1 and records each claim.</summary>
    private sealed class CountingWork(int count) : IParallelWork
    {
        private int _next;
        public int[] Runs { get; } = new int[count];

        public void Reset()
        {
            _next = 0;
            Array.Clear(Runs);
        }

        public void Execute(int worker)
        {
            int piece;
            while ((piece = Interlocked.Increment(ref _next) - 1) < Runs.Length)
            {
                Interlocked.Increment(ref Runs[piece]);
                if (piece % 7 == 0) Thread.SpinWait(50);
            }
        }
    }

    private sealed class FailingWork : IParallelWork
    {
        public void Execute(int worker) => throw new InvalidOperationException("piece failed");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Every_piece_of_every_job_runs_exactly_once(int threads)
    {
        // Short jobs back to back (workers still spinning, or arriving after the job closed), and jobs after a
        // pause long enough for the workers to park.
        using var workers = new CoreWorkers(threads, TimeSpan.FromMilliseconds(0.2));
        var work = new CountingWork(37);
        for (int job = 0; job < 3000; job++)
        {
            work.Reset();
            workers.Run(work);
            Assert.All(work.Runs, r => Assert.Equal(1, r));
            if (job % 500 == 0) Thread.Sleep(5);
        }
    }

    [Fact]
    public void A_failing_piece_surfaces_on_the_dispatching_thread_and_the_workers_stay_usable()
    {
        using var workers = new CoreWorkers(2);
        Assert.Throws<InvalidOperationException>(() => workers.Run(new FailingWork()));
        var work = new CountingWork(100);
        workers.Run(work);
        Assert.All(work.Runs, r => Assert.Equal(1, r));
    }

    [Fact]
    public void Read_bandwidth_is_measured_with_the_workers()
    {
        double bytesPerSecond = MemoryBandwidth.MeasureRead(16L << 20, 2, 2);
        Assert.InRange(bytesPerSecond, 1e8, 1e13);
    }
}
