using System.Diagnostics;
using System.Text.Json;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Inference;

namespace BigModel.Harness;

/// <summary>
/// Kills conversions into an offload folder (SIGKILL) at random moments and at chosen phases, into an empty folder or
/// over a damaged file left under the final name, and checks the guarantee after each: the final name is absent, still
/// the damaged file untouched, or a complete file whose every tensor matches the source byte for byte. Temporary files
/// and the lock file a killed writer leaves are allowed; the next, unkilled conversion must remove them all and leave
/// one valid file.
/// </summary>
internal static class OffloadKillTrials
{
    public static int Run(Arguments args)
    {
        var work = Path.GetFullPath(args.Required("work"));
        int trials = args.Int("trials", 32);
        long size = args.Size("size", 48L << 20);
        var random = new Random(args.Int("seed", Environment.TickCount));
        Directory.CreateDirectory(work);
        var source = Path.Combine(work, "source");
        var folder = Path.Combine(work, "offload");
        Folders.Delete(source);
        Folders.Delete(folder);

        GenerateCommand.Write(source, size, 2L << 20, DType.F32, seed: 6);
        var digests = CheckpointCheck.Digests(Checkpoint.Open(source));

        // Timed twice; the second run, with the source in the page cache, is the one the random kill times spread over.
        var baseline = TimeSpan.Zero;
        for (int run = 0; run < 2; run++)
        {
            Folders.Delete(folder);
            var clock = Stopwatch.StartNew();
            var (code, output) = KillTrials.RunChild(["offload", source, folder, "--phases"], null, out _);
            baseline = clock.Elapsed;
            if (code != 0)
            {
                Console.WriteLine($"baseline conversion failed ({code}): {output}");
                return 1;
            }
        }
        var files = Directory.GetFiles(folder);
        var baselineProblem = files.Length != 1 ? "it left " + string.Join(", ", files.Select(Path.GetFileName)) : Problem(files[0], digests);
        if (baselineProblem is not null)
        {
            Console.WriteLine($"baseline conversion is not valid: {baselineProblem}");
            return 1;
        }
        var finalName = files[0];
        int tensorCount = digests.Count;
        // What an earlier writer could have left under the final name had it not been atomic: the header and part of the data.
        var damaged = File.ReadAllBytes(finalName).AsSpan(0, (int)(new FileInfo(finalName).Length * 3 / 5)).ToArray();
        Console.WriteLine($"source {size} bytes, {tensorCount} tensors; baseline conversion {baseline.TotalMilliseconds:F0} ms into {Path.GetFileName(finalName)}");

        var outcomes = new Dictionary<string, int>(StringComparer.Ordinal);
        int failures = 0;
        var started = Stopwatch.StartNew();
        for (int trial = 1; trial <= trials; trial++)
        {
            bool overDamaged = random.Next(2) == 1;
            Folders.Delete(folder);
            Directory.CreateDirectory(folder);
            if (overDamaged) File.WriteAllBytes(finalName, damaged);

            string? killAtPhase = null;
            TimeSpan? killAfter = null;
            if (random.Next(2) == 0)
            {
                killAtPhase = random.Next(4) switch
                {
                    0 => "Committing",
                    1 => "Completed",
                    _ => "Converting " + random.Next(1, tensorCount + 1),
                };
            }
            else
            {
                killAfter = baseline * (random.NextDouble() * 1.2);
            }
            var (code, _) = KillTrials.RunChild(["offload", source, folder, "--phases"], killAtPhase is null ? null : (line => line == "phase " + killAtPhase), out bool killed, killAfter);

            string outcome;
            string? failure = null;
            if (!File.Exists(finalName))
            {
                outcome = "absent";
                if (overDamaged) failure = "the file under the final name disappeared without a replacement";
            }
            else if (overDamaged && File.ReadAllBytes(finalName).AsSpan().SequenceEqual(damaged))
            {
                outcome = "damaged file untouched";
            }
            else
            {
                failure = Problem(finalName, digests);
                outcome = failure is null ? "complete" : "broken";
            }
            var strays = Directory.GetFiles(folder).Select(Path.GetFileName)
                .Where(n => n != Path.GetFileName(finalName) && !n!.Contains(OffloadConverter.TempMarker, StringComparison.Ordinal) && !n.EndsWith(OffloadConverter.LockSuffix, StringComparison.Ordinal))
                .ToList();
            if (strays.Count > 0) failure ??= "unexpected files: " + string.Join(", ", strays);
            if (!killed && code != 0) failure ??= $"the conversion failed on its own with exit code {code}";
            if (!killed && outcome != "complete") failure ??= "an unkilled conversion did not leave a complete file";
            var when = killAtPhase is not null ? $"at phase {killAtPhase}" : $"after {killAfter!.Value.TotalMilliseconds:F0} ms";
            var what = killed ? "killed " + when : "finished before the kill " + when;
            Console.WriteLine($"trial {trial,3}: {(overDamaged ? "over damaged file" : "empty folder     ")} {what,-40} -> {outcome}{(failure is null ? "" : "  FAIL: " + failure)}");
            outcomes[killed ? outcome : "completed"] = outcomes.GetValueOrDefault(killed ? outcome : "completed") + 1;
            if (failure is not null) failures++;
        }

        // The next ordinary conversion cleans what the killed one left (temporary file, lock file) and succeeds.
        int leftoversBefore = Directory.GetFiles(folder).Count(f => f != finalName);
        var (finalCode, finalOutput) = KillTrials.RunChild(["offload", source, folder], null, out _);
        var remaining = Directory.GetFiles(folder).Where(f => f != finalName).Select(Path.GetFileName).ToList();
        var finalProblem = finalCode != 0 ? $"final conversion failed: {finalOutput}"
            : remaining.Count > 0 ? $"leftovers remain: {string.Join(", ", remaining)}"
            : Problem(finalName, digests);
        if (finalProblem is not null)
        {
            Console.WriteLine("final run: FAIL: " + finalProblem);
            failures++;
        }
        else
        {
            Console.WriteLine($"final run: cleaned {leftoversBefore} leftover(s), offload file valid");
        }
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            target = "offload",
            trials,
            killed = trials - outcomes.GetValueOrDefault("completed"),
            outcomes,
            failures,
            seconds = Math.Round(started.Elapsed.TotalSeconds, 1),
        }));
        return failures == 0 ? 0 : 1;
    }

    /// <summary>Null when <paramref name="file"/> reads as safetensors holding exactly the expected tensors; else the problem.</summary>
    private static string? Problem(string file, Dictionary<string, string> expected)
    {
        SafetensorsHeader header;
        try
        {
            header = SafetensorsHeader.Read(file);
        }
        catch (BigModelException e)
        {
            return $"does not read: {e.Message}";
        }
        Dictionary<string, string> actual;
        try
        {
            actual = CheckpointCheck.Digests(header.Tensors);
        }
        catch (BigModelException e)
        {
            return $"its data does not read: {e.Message}";
        }
        if (actual.Count != expected.Count) return $"{actual.Count} tensors instead of {expected.Count}";
        foreach (var (name, digest) in expected)
        {
            if (!actual.TryGetValue(name, out var other)) return $"tensor {name} is missing";
            if (other != digest) return $"tensor {name} has different bytes";
        }
        return null;
    }
}
