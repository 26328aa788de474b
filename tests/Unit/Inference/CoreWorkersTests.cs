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

    /// <summary>Background work: claims pieces until stopped, records who ran each and whether anyone is still inside.</summary>
    private sealed class BackgroundWork(int count, bool fail = false) : IBackgroundWork
    {
        private int _next;
        private volatile bool _stopped;
        public int Inside;
        public volatile bool Entered;
        public int[] Runs { get; } = new int[count];
        public int[] RanOn { get; } = Enumerable.Repeat(-1, count).ToArray();

        public void Stop() => _stopped = true;

        public void Execute(int worker)
        {
            Interlocked.Increment(ref Inside);
            Entered = true;
            try
            {
                if (fail) throw new InvalidOperationException("background piece failed");
                int piece;
                while (!_stopped && (piece = Interlocked.Increment(ref _next) - 1) < Runs.Length)
                {
                    Interlocked.Increment(ref Runs[piece]);
                    RanOn[piece] = worker;
                    Thread.SpinWait(200);
                }
            }
            finally
            {
                Interlocked.Decrement(ref Inside);
            }
        }
    }

    [Fact]
    public void Background_work_runs_on_the_other_workers_until_the_next_job_stops_it()
    {
        using var workers = new CoreWorkers(3);
        for (int round = 0; round < 200; round++)
        {
            var background = new BackgroundWork(100_000);
            workers.Start(background);
            if (round % 2 == 0) Thread.SpinWait(2000);
            var job = new CountingWork(50);
            workers.Run(job);
            Assert.Equal(0, Volatile.Read(ref background.Inside));
            Assert.All(job.Runs, r => Assert.Equal(1, r));
            Assert.True(background.Runs.Count(r => r > 0) < background.Runs.Length, "the background work should have been stopped");
            Assert.All(background.Runs, r => Assert.InRange(r, 0, 1));
            Assert.DoesNotContain(0, background.RanOn);
        }
    }

    [Fact]
    public void Stopping_background_work_waits_for_it_and_leaves_the_workers_usable()
    {
        using var workers = new CoreWorkers(2);
        for (int round = 0; round < 100; round++)
        {
            var background = new BackgroundWork(100_000);
            workers.Start(background);
            if (round % 2 == 0) Thread.SpinWait(2000);
            workers.Stop();
            Assert.Equal(0, Volatile.Read(ref background.Inside));
            workers.Stop();
        }
        var job = new CountingWork(20);
        workers.Run(job);
        Assert.All(job.Runs, r => Assert.Equal(1, r));
    }

    [Fact]
    public void Background_work_left_alone_runs_each_piece_once()
    {
        using var workers = new CoreWorkers(2);
        var background = new BackgroundWork(500);
        workers.Start(background);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (background.Runs.Any(r => r == 0) && DateTime.UtcNow < deadline) Thread.Sleep(1);
        workers.Run(new CountingWork(10));
        Assert.All(background.Runs, r => Assert.Equal(1, r));
        Assert.All(background.RanOn, w => Assert.Equal(1, w));
    }

    [Fact]
    public void Background_work_is_dropped_on_one_core_and_its_failure_surfaces_from_the_next_job()
    {
        using (var single = new CoreWorkers(1))
        {
            var background = new BackgroundWork(10);
            single.Start(background);
            single.Run(new CountingWork(10));
            Assert.All(background.Runs, r => Assert.Equal(0, r));
        }

        using var workers = new CoreWorkers(2);
        var failing = new BackgroundWork(10, fail: true);
        workers.Start(failing);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!failing.Entered && DateTime.UtcNow < deadline) Thread.Sleep(1);
        Assert.Throws<InvalidOperationException>(() => workers.Run(new CountingWork(10)));
        var after = new CountingWork(10);
        workers.Run(after);
        Assert.All(after.Runs, r => Assert.Equal(1, r));
    }

    [Fact]
    public void Disposing_stops_background_work()
    {
        var workers = new CoreWorkers(2);
        var background = new BackgroundWork(1_000_000);
        workers.Start(background);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!background.Entered && DateTime.UtcNow < deadline) Thread.Sleep(1);
        workers.Dispose();
        Assert.Equal(0, Volatile.Read(ref background.Inside));
    }

    [Fact]
    public void Read_bandwidth_is_measured_with_the_workers()
    {
        double bytesPerSecond = MemoryBandwidth.MeasureRead(16L << 20, 2, 2);
        Assert.InRange(bytesPerSecond, 1e8, 1e13);
    }

    [Fact]
    public void A_bandwidth_probe_reads_again_until_disposed()
    {
        var probe = new MemoryBandwidth.Probe(4L << 20, 2);
        for (int i = 0; i < 3; i++) Assert.InRange(probe.Measure(), 1e8, 1e13);
        probe.Dispose();
        probe.Dispose();
        Assert.Throws<ObjectDisposedException>(() => probe.Measure());
        Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryBandwidth.Probe(1024));
    }
}
