using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using BigModel.Checkpoints;
using BigModel.IO;
using BigModel.Sharding;

namespace BigModel.Harness;

/// <summary>
/// Split throughput against <c>cp</c> of the same weight files on the same disk in the same run. Both write durably
/// (the split fsyncs each file; cp is followed by <c>sync FILE...</c>), runs alternate to share cache conditions, and
/// the median of each is compared. Peak RSS is this process's, which ran nothing but the splits.
/// </summary>
internal static class BenchCommand
{
    public static int Run(Arguments args)
    {
        var source = Path.GetFullPath(args.Positional(0, "SOURCE"));
        var work = Path.GetFullPath(args.Positional(1, "WORKDIR"));
        int repeat = Math.Max(1, args.Int("repeat", 3));
        var options = new SplitOptions
        {
            MaxShardSize = args.Size("max-shard-size", 500_000_000),
            DType = args.Option("dtype") is { } d ? DTypes.Parse(d) : null,
            Force = true,
        };
        var checkpoint = Checkpoint.Open(source);
        var files = checkpoint.Files.ToList();
        long cpBytes = files.Sum(f => new FileInfo(f).Length);
        Directory.CreateDirectory(work);
        var cpTimes = new List<double>();
        var splitTimes = new List<double>();
        long splitBytes = 0;
        int shards = 0;
        // One unmeasured split first: JIT, and the source in the page cache for both tools alike.
        TimeSplit(source, Path.Combine(work, "split"), options, out _, out _);
        for (int r = 0; r < repeat; r++)
        {
            // Alternate which tool goes first, so neither always inherits the other's writeback.
            for (int turn = 0; turn < 2; turn++)
            {
                if ((turn == 0) == (r % 2 == 0)) cpTimes.Add(TimeCp(files, Path.Combine(work, "cp")));
                else splitTimes.Add(TimeSplit(source, Path.Combine(work, "split"), options, out splitBytes, out shards));
            }
            Console.WriteLine($"run {r + 1}: cp {cpTimes[^1]:F2} s, split {splitTimes[^1]:F2} s ({LastPhases})");
        }
        double cpSeconds = Median(cpTimes), splitSeconds = Median(splitTimes);
        double cpRate = cpBytes / cpSeconds, splitRate = splitBytes / splitSeconds;
        // Throughput ratio over the same source bytes: cp's time over the split's, per pair, then the median, which
        // a busy machine disturbs less than a ratio of two medians.
        double ratio = Median(cpTimes.Zip(splitTimes, (c, t) => c / t).ToList());
        double bestRatio = cpTimes.Min() / splitTimes.Min();
        long peak = Memory.PeakRssBytes();
        var summary = new
        {
            source,
            sourceBytes = cpBytes,
            tensors = checkpoint.Tensors.Count,
            maxShardSize = options.MaxShardSize,
            dtype = options.DType?.TorchName(),
            shards,
            repeat,
            cpSeconds = Math.Round(cpSeconds, 3),
            splitSeconds = Math.Round(splitSeconds, 3),
            cpMBps = Math.Round(cpRate / 1e6, 1),
            splitMBps = Math.Round(splitRate / 1e6, 1),
            ratioToCp = Math.Round(ratio, 3),
            bestRatioToCp = Math.Round(bestRatio, 3),
            peakRssBytes = peak,
            peakRssMiB = Math.Round(peak / 1048576.0, 1),
        };
        Console.WriteLine($"cp    : {ByteSize.Format(cpBytes)} in {cpSeconds:F2} s = {cpRate / 1e6:F0} MB/s (median of {repeat})");
        Console.WriteLine($"split : {ByteSize.Format(splitBytes)} in {shards} shards in {splitSeconds:F2} s = {splitRate / 1e6:F0} MB/s");
        Console.WriteLine($"ratio : {ratio:F3} of cp's throughput (median of pairs; best run against best run {bestRatio:F3}); peak RSS {peak / 1048576.0:F1} MiB");
        Console.WriteLine(JsonSerializer.Serialize(summary));
        if (args.Option("markdown") is { } markdown) AppendMarkdown(markdown, summary.source, cpBytes, checkpoint.Tensors.Count, options, shards, repeat,
            cpSeconds, splitSeconds, cpRate, splitRate, ratio, peak);
        return 0;
    }

    /// <summary>Seconds spent in each phase of the last timed split, for telling copying from flushing.</summary>
    private static string LastPhases = "";

    private static double TimeCp(List<string> files, string folder)
    {
        Folders.Delete(folder);
        Directory.CreateDirectory(folder);
        var clock = Stopwatch.StartNew();
        var (code, output) = ChildProcess.Run("cp", [.. files, folder + "/"], TimeSpan.FromHours(1));
        if (code != 0) throw new InvalidOperationException("cp failed: " + output);
        (code, output) = ChildProcess.Run("sync", files.Select(f => Path.Combine(folder, Path.GetFileName(f))), TimeSpan.FromHours(1));
        if (code != 0) throw new InvalidOperationException("sync failed: " + output);
        double seconds = clock.Elapsed.TotalSeconds;
        Folders.Delete(folder);
        return seconds;
    }

    private static double TimeSplit(string source, string folder, SplitOptions options, out long bytes, out int shards)
    {
        Folders.Delete(folder);
        var phases = new List<(SplitPhase Phase, int Shard, TimeSpan At)>();
        var clock = Stopwatch.StartNew();
        var progress = new SplitCommand.Reporter(p =>
        {
            if (phases.Count == 0 || phases[^1].Phase != p.Phase || phases[^1].Shard != p.Shard) phases.Add((p.Phase, p.Shard, clock.Elapsed));
        });
        var result = CheckpointSplitter.Split(Checkpoint.Open(source), folder, options, progress);
        double seconds = clock.Elapsed.TotalSeconds;
        LastPhases = string.Join(", ", phases.Zip(phases.Skip(1).Append((Phase: SplitPhase.Completed, Shard: 0, At: clock.Elapsed)),
            (a, b) => $"{a.Phase}{(a.Phase == SplitPhase.WritingShards ? " " + a.Shard : "")} {(b.At - a.At).TotalSeconds:F2}"));
        bytes = result.ShardFiles.Sum(f => new FileInfo(f).Length);
        shards = result.ShardFiles.Count;
        Folders.Delete(folder);
        return seconds;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static void AppendMarkdown(string path, string source, long bytes, int tensors, SplitOptions options, int shards, int repeat,
        double cpSeconds, double splitSeconds, double cpRate, double splitRate, double ratio, long peak)
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        if (!File.Exists(path) || new FileInfo(path).Length == 0)
            text.AppendLine("| date | source | tensors | max shard | dtype | shards | cp | split | ratio to cp | peak RSS |")
                .AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        text.Append(c, $"| {DateTime.UtcNow:yyyy-MM-dd} | {ByteSize.Format(bytes)} | {tensors} | {ByteSize.Format(options.MaxShardSize)} | {options.DType?.TorchName() ?? "unchanged"} | {shards} ")
            .Append(c, $"| {cpSeconds:F2} s, {cpRate / 1e6:F0} MB/s | {splitSeconds:F2} s, {splitRate / 1e6:F0} MB/s | {ratio:F2} | {peak / 1048576.0:F0} MiB |")
            .AppendLine();
        File.AppendAllText(path, text.ToString());
    }
}
