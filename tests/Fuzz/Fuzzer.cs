using System.Diagnostics;
using System.Security.Cryptography;
using BigModel.Errors;

namespace BigModel.Fuzz;

/// <summary>What one fuzzing run of one target found.</summary>
public sealed record FuzzReport(string Target, long Inputs, long Accepted, long Rejected, IReadOnlyList<FuzzFinding> Findings,
    double SlowestMs, long MostAllocated, TimeSpan Elapsed, IReadOnlyDictionary<BigModelErrorCode, long> RejectedBy);

/// <summary>An input that ended in something other than success or a typed BigModel error.</summary>
public sealed record FuzzFinding(string Kind, string Detail, string SavedAs);

/// <summary>Limits each input must respect.</summary>
public sealed record FuzzLimits
{
    /// <summary>An input running longer than this is a hang.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Allocation allowed per input beyond <see cref="AllocationPerInputByte"/> × input length.</summary>
    public long AllocationAllowance { get; init; } = 64L << 20;

    public long AllocationPerInputByte { get; init; } = 32;
}

/// <summary>
/// Mutation fuzzing of one target: each input runs on a dedicated worker thread (so a hang is detected and the run
/// stops instead of spinning forever), its allocations are measured, and every finding is saved to disk before the
/// next input, so even an input that kills the process is kept (as <c>current.bin</c>).
/// </summary>
public static class Fuzzer
{
    public static FuzzReport Run(IFuzzTarget target, SeedSources sources, long iterations, int seed, string findingsDirectory, FuzzLimits? limits = null, TextWriter? log = null)
    {
        limits ??= new FuzzLimits();
        var seeds = target.Seeds(sources);
        if (seeds.Count == 0) throw new InvalidOperationException($"target {target.Name} has no seeds");
        var random = new Random(seed);
        var findings = new List<FuzzFinding>();
        var rejectedBy = new Dictionary<BigModelErrorCode, long>();
        long accepted = 0, rejected = 0, inputs = 0, mostAllocated = 0;
        double slowest = 0;
        var clock = Stopwatch.StartNew();
        var targetDir = Path.Combine(findingsDirectory, target.Name);
        using var scratch = new Scratch();
        using var worker = new Worker(target, scratch);
        var corpus = new List<byte[]>(seeds);
        for (long i = 0; i < iterations; i++)
        {
            // Seeds themselves first, then mutants of seeds or of earlier accepted mutants.
            byte[] input = i < seeds.Count ? seeds[(int)i] : Mutator.Mutate(target, corpus[random.Next(corpus.Count)], seeds, random);
            inputs++;
            var outcome = worker.Execute(input, limits.Timeout);
            slowest = Math.Max(slowest, outcome.Milliseconds);
            mostAllocated = Math.Max(mostAllocated, outcome.Allocated);
            string? problem = outcome switch
            {
                { TimedOut: true } => $"hang: no result after {limits.Timeout.TotalSeconds:0} s",
                { Error: BigModelException } => null,
                { Error: { } e } => $"untyped {e.GetType().FullName}: {e.Message}",
                _ => null,
            };
            if (problem is null && outcome.Allocated > limits.AllocationAllowance + limits.AllocationPerInputByte * input.Length)
                problem = $"allocation: {outcome.Allocated:N0} bytes for a {input.Length:N0}-byte input";
            if (problem is not null)
            {
                var saved = Save(targetDir, input, problem + Environment.NewLine + outcome.Error);
                findings.Add(new FuzzFinding(problem.Split(':')[0], problem, saved));
                log?.WriteLine($"[{target.Name}] finding #{findings.Count}: {problem} -> {saved}");
                if (outcome.TimedOut) break; // The worker is stuck; nothing after this would be meaningful.
            }
            else if (outcome.Error is BigModelException typed)
            {
                rejected++;
                rejectedBy[typed.Code] = rejectedBy.GetValueOrDefault(typed.Code) + 1;
            }
            else
            {
                accepted++;
                if (corpus.Count < 2048 && i >= seeds.Count) corpus.Add(input);
            }
            if (log is not null && (i + 1) % 10_000 == 0)
                log.WriteLine($"[{target.Name}] {i + 1:N0} inputs, {accepted:N0} accepted, {rejected:N0} rejected, {findings.Count} findings, {clock.Elapsed.TotalSeconds:0} s");
        }
        return new FuzzReport(target.Name, inputs, accepted, rejected, findings, slowest, mostAllocated, clock.Elapsed, rejectedBy);
    }

    private static string Save(string directory, byte[] input, string why)
    {
        Directory.CreateDirectory(directory);
        var name = Convert.ToHexStringLower(SHA256.HashData(input))[..16];
        var path = Path.Combine(directory, name + ".bin");
        File.WriteAllBytes(path, input);
        File.WriteAllText(Path.ChangeExtension(path, ".txt"), why);
        return path;
    }

    private readonly record struct Outcome(Exception? Error, bool TimedOut, double Milliseconds, long Allocated);

    /// <summary>One long-lived thread that runs inputs handed to it, so a hang can be detected from outside.</summary>
    private sealed class Worker : IDisposable
    {
        private readonly IFuzzTarget _target;
        private readonly Scratch _scratch;
        private readonly Thread _thread;
        private readonly SemaphoreSlim _ready = new(0);
        private readonly SemaphoreSlim _done = new(0);
        private byte[] _input = [];
        private Outcome _outcome;
        private volatile bool _stop;

        public Worker(IFuzzTarget target, Scratch scratch)
        {
            _target = target;
            _scratch = scratch;
            // A generous stack: deep but legitimate nesting must not be mistaken for a crash.
            _thread = new Thread(Loop, 16 << 20) { IsBackground = true, Name = "fuzz-" + target.Name };
            _thread.Start();
        }

        public Outcome Execute(byte[] input, TimeSpan timeout)
        {
            _input = input;
            _ready.Release();
            if (!_done.Wait(timeout)) return new Outcome(null, true, timeout.TotalMilliseconds, 0);
            return _outcome;
        }

        private void Loop()
        {
            while (true)
            {
                _ready.Wait();
                if (_stop) return;
                long before = GC.GetAllocatedBytesForCurrentThread();
                var clock = Stopwatch.StartNew();
                Exception? error = null;
                try
                {
                    _target.Execute(_input, _scratch);
                }
                catch (Exception e)
                {
                    error = e;
                }
                _outcome = new Outcome(error, false, clock.Elapsed.TotalMilliseconds, GC.GetAllocatedBytesForCurrentThread() - before);
                _done.Release();
            }
        }

        public void Dispose()
        {
            _stop = true;
            _ready.Release();
        }
    }
}
