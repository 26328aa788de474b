using System.Diagnostics;
using System.Text.Json;
using BigModel.Checkpoints;
using BigModel.IO;
using BigModel.Sharding;

namespace BigModel.Harness;

/// <summary>
/// Kills splits (SIGKILL) at random moments and at chosen phases, with and without an existing destination, and checks
/// the guarantee after each: the destination is absent, or a complete and valid checkpoint (the previous one, or the
/// new one) whose every tensor matches the source byte for byte. A last, unkilled run must leave no leftovers.
/// </summary>
internal static class KillTrials
{
    private static readonly TimeSpan ChildTimeout = TimeSpan.FromSeconds(120);

    public static int Run(Arguments args)
    {
        switch (args.Option("target") ?? "split")
        {
            case "split": break;
            case "offload": return OffloadKillTrials.Run(args);
            default: throw new UsageException("--target must be split or offload.");
        }
        var work = Path.GetFullPath(args.Required("work"));
        int trials = args.Int("trials", 32);
        long size = args.Size("size", 48L << 20);
        var random = new Random(args.Int("seed", Environment.TickCount));
        const string shardSize = "4MiB";
        Directory.CreateDirectory(work);
        var source = Path.Combine(work, "source");
        var previous = Path.Combine(work, "previous");
        var destination = Path.Combine(work, "out");
        foreach (var path in new[] { source, previous, destination }) Folders.Delete(path);
        foreach (var leftover in StagedDirectory.FindLeftovers(destination)) Folders.Delete(leftover);

        GenerateCommand.Write(source, size, 2L << 20, DType.F32, seed: 5);
        var digests = CheckpointCheck.Digests(Checkpoint.Open(source));
        // The "previous" destination has a different shard layout, so which one survived is visible.
        var old = CheckpointSplitter.Split(Checkpoint.Open(source), previous, SplitOptions.Parse("16MiB"));
        int oldShards = old.ShardFiles.Count;

        // Timed twice; the second run, with the source in the page cache, is the one the random kill times spread over.
        int baselineCode = 0;
        string baselineOutput = "";
        var baseline = TimeSpan.Zero;
        for (int run = 0; run < 2 && baselineCode == 0; run++)
        {
            Folders.Delete(destination);
            var clock = Stopwatch.StartNew();
            (baselineCode, baselineOutput) = RunChild(["split", source, destination, "--max-shard-size", shardSize, "--phases"], null, out _);
            baseline = clock.Elapsed;
        }
        if (baselineCode != 0)
        {
            Console.WriteLine($"baseline split failed ({baselineCode}): {baselineOutput}");
            return 1;
        }
        var problem = CheckpointCheck.Problem(destination, digests, out int newShards);
        if (problem is not null)
        {
            Console.WriteLine($"baseline split is not valid: {problem}");
            return 1;
        }
        Console.WriteLine($"source {size} bytes; baseline split {baseline.TotalMilliseconds:F0} ms, {newShards} shards (previous layout {oldShards})");

        string[] phases = ["Preparing", "WritingShards", "WritingIndex", "CopyingFiles", "Verifying", "Committing", "Completed"];
        var outcomes = new Dictionary<string, int>(StringComparer.Ordinal);
        int failures = 0;
        var started = Stopwatch.StartNew();
        for (int trial = 1; trial <= trials; trial++)
        {
            bool existing = random.Next(2) == 1;
            Folders.Delete(destination);
            if (existing) Folders.Copy(previous, destination);

            string? killAtPhase = null;
            TimeSpan? killAfter = null;
            if (random.Next(2) == 0)
            {
                killAtPhase = phases[random.Next(phases.Length)];
                if (killAtPhase == "WritingShards") killAtPhase += " " + random.Next(1, newShards + 1);
            }
            else
            {
                killAfter = baseline * (random.NextDouble() * 1.2);
            }
            var childArgs = new List<string> { "split", source, destination, "--max-shard-size", shardSize, "--phases" };
            if (existing) childArgs.Add("--force");
            var (code, _) = RunChild([.. childArgs], killAtPhase is null ? null : (line => line == "phase " + killAtPhase), out bool killed, killAfter);

            string outcome;
            string? failure = null;
            if (!Directory.Exists(destination))
            {
                outcome = "absent";
                if (existing) failure = "the existing destination disappeared";
            }
            else
            {
                var p = CheckpointCheck.Problem(destination, digests, out int shards);
                outcome = shards == newShards ? "new" : shards == oldShards ? "previous" : $"{shards} shards";
                if (p is not null) failure = $"the destination is not valid: {p}";
                else if (!existing && shards != newShards) failure = "an unexpected checkpoint appeared";
            }
            if (!killed && code != 0) failure ??= $"the split failed on its own with exit code {code}";
            var when = killAtPhase is not null ? $"at phase {killAtPhase}" : $"after {killAfter!.Value.TotalMilliseconds:F0} ms";
            var what = killed ? "killed " + when : "finished before the kill " + when;
            Console.WriteLine($"trial {trial,3}: {(existing ? "existing+force" : "fresh         ")} {what,-40} -> {outcome}{(failure is null ? "" : "  FAIL: " + failure)}");
            outcomes[killed ? outcome : "completed"] = outcomes.GetValueOrDefault(killed ? outcome : "completed") + 1;
            if (failure is not null) failures++;
        }

        // The next ordinary run cleans what the killed ones left (staging folders, lock file) and succeeds.
        var leftoversBefore = StagedDirectory.FindLeftovers(destination).Count;
        var (finalCode, finalOutput) = RunChild(["split", source, destination, "--max-shard-size", shardSize, "--force"], null, out _);
        var remaining = StagedDirectory.FindLeftovers(destination);
        var lockFile = Path.Combine(work, ".out" + StagedDirectory.LockSuffix);
        var finalProblem = finalCode != 0 ? $"final split failed: {finalOutput}"
            : remaining.Count > 0 ? $"leftovers remain: {string.Join(", ", remaining)}"
            : File.Exists(lockFile) ? "the lock file remains"
            : CheckpointCheck.Problem(destination, digests, out _);
        if (finalProblem is not null)
        {
            Console.WriteLine("final run: FAIL: " + finalProblem);
            failures++;
        }
        else
        {
            Console.WriteLine($"final run: cleaned {leftoversBefore} leftover(s), destination valid");
        }
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            trials,
            killed = trials - outcomes.GetValueOrDefault("completed"),
            outcomes,
            failures,
            seconds = Math.Round(started.Elapsed.TotalSeconds, 1),
        }));
        return failures == 0 ? 0 : 1;
    }

    /// <summary>Runs a harness child (split, offload); kills it when <paramref name="killWhen"/> matches an output line or after <paramref name="killAfter"/>.</summary>
    internal static (int Code, string Output) RunChild(string[] args, Func<string, bool>? killWhen, out bool killed, TimeSpan? killAfter = null)
    {
        using var process = Process.Start(ChildProcess.Harness(args)) ?? throw new InvalidOperationException("could not start the child");
        var output = new System.Text.StringBuilder();
        bool wasKilled = false;
        var gate = new object();
        void Kill()
        {
            lock (gate)
            {
                if (wasKilled || process.HasExited) return;
                try
                {
                    process.Kill();
                    wasKilled = true;
                }
                catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
                {
                    // It exited on its own in the meantime.
                }
            }
        }
        var stderr = process.StandardError.ReadToEndAsync();
        Timer? timer = killAfter is { } delay ? new Timer(_ => Kill(), null, delay, Timeout.InfiniteTimeSpan) : null;
        string? line;
        while ((line = process.StandardOutput.ReadLine()) is not null)
        {
            output.AppendLine(line);
            if (killWhen?.Invoke(line) == true) Kill();
        }
        if (!process.WaitForExit(ChildTimeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException("a child did not finish in time");
        }
        timer?.Dispose();
        lock (gate) killed = wasKilled;
        return (process.ExitCode, output + stderr.Result);
    }

}
