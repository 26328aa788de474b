using System.Diagnostics;
using System.Globalization;
using System.Text;
using BigModel.Checkpoints;

namespace BigModel.Inference;

/// <summary>One configuration to measure: a placement and the engine options.</summary>
public sealed record BenchmarkCase(string Name, IReadOnlyDictionary<string, string>? Placement, InferenceOptions Options);

/// <summary>What one <see cref="BenchmarkCase"/> measured.</summary>
public sealed record BenchmarkMeasurement(
    string Name,
    int DecodeTokens,
    double LoadSeconds,
    double FirstTokenMilliseconds,
    double MeanDecodeMilliseconds,
    double MedianDecodeMilliseconds,
    double MinDecodeMilliseconds,
    double PrefetchWaitMillisecondsPerToken,
    long BaselineRssAnonBytes,
    long PeakRssAnonBytes,
    long HostResidentBytes,
    long MappedBytes,
    long StreamedBytes,
    long PrefetchWindowBytes,
    long DiskBytesPerToken,
    IReadOnlyList<int> GeneratedIds)
{
    /// <summary>Mean decode latency of every round, when the case ran in several (see <see cref="InferenceBenchmark.RunRounds"/>).</summary>
    public IReadOnlyList<double> RoundMeans { get; init; } = [];

    /// <summary>Anonymous memory the run added on top of the process before the session was opened.</summary>
    public long AddedRssAnonBytes => PeakRssAnonBytes - BaselineRssAnonBytes;
}

/// <summary>
/// Decode-latency and memory measurements of the engine on a checkpoint: all-resident, part or all of the blocks on
/// disk, with prefetch or synchronously, with the page cache warm or with every token reading its disk blocks from
/// storage. Each case runs greedy decoding from token 1 in a fresh session and reports per-token latency after the
/// first token and the peak anonymous memory (RssAnon) sampled during the run. Used by the Bench build target.
/// </summary>
public static class InferenceBenchmark
{
    /// <summary>
    /// A placement keeping the embedding and the first layers in host memory and putting the last
    /// <paramref name="diskFraction"/> of the layers, the final norm and the head on disk (the order Accelerate fills
    /// devices in: what does not fit goes last).
    /// </summary>
    public static Dictionary<string, string> LastLayersOnDisk(Checkpoint checkpoint, double diskFraction)
    {
        var config = checkpoint.Config ?? throw new ArgumentException("the checkpoint has no config.json.", nameof(checkpoint));
        int layers = config.NumHiddenLayers ?? 0;
        int onDisk = (int)Math.Ceiling(layers * Math.Clamp(diskFraction, 0, 1));
        string prefix = checkpoint.Find("model.embed_tokens.weight") is not null ? "model." : "";
        var placement = new Dictionary<string, string> { [""] = "cpu" };
        for (int i = layers - onDisk; i < layers; i++) placement[$"{prefix}layers.{i}"] = "disk";
        if (onDisk > 0)
        {
            placement[prefix + "norm"] = "disk";
            placement["lm_head"] = "disk";
        }
        return placement;
    }

    /// <summary>The standard comparison on a Llama-family checkpoint: resident, half on disk and all on disk, each way.</summary>
    public static IReadOnlyList<BenchmarkCase> StandardCases(Checkpoint checkpoint, int? threads = null)
    {
        var half = LastLayersOnDisk(checkpoint, 0.5);
        var all = new Dictionary<string, string> { [""] = "disk" };
        var o = new InferenceOptions { Threads = threads };
        var cold = o with { ReleaseDiskPages = true };
        return
        [
            new("resident", null, o),
            new("half disk, warm cache, mapped, prefetch", half, o),
            new("half disk, warm cache, copied, synchronous (Accelerate's scheme)", half, o with { Prefetch = false, DiskAccess = DiskAccess.Copied }),
            new("half disk, cold, mapped, prefetch (read)", half, cold with { PageIn = PageInMethod.Read }),
            new("half disk, cold, mapped, prefetch (populate)", half, cold with { PageIn = PageInMethod.Populate }),
            new("half disk, cold, mapped, prefetch (willneed)", half, cold with { PageIn = PageInMethod.WillNeed }),
            new("half disk, cold, mapped, prefetch (touch)", half, cold with { PageIn = PageInMethod.Touch }),
            new("half disk, cold, mapped, synchronous", half, cold with { Prefetch = false }),
            new("half disk, cold, copied, prefetch", half, cold with { DiskAccess = DiskAccess.Copied }),
            new("half disk, cold, copied, synchronous (Accelerate's scheme)", half, cold with { Prefetch = false, DiskAccess = DiskAccess.Copied }),
            new("half disk, cold, direct, prefetch", half, cold with { DiskAccess = DiskAccess.Direct }),
            new("all disk, warm cache, mapped, prefetch", all, o),
            new("all disk, cold, mapped, prefetch (read)", all, cold with { PageIn = PageInMethod.Read }),
            new("all disk, cold, mapped, prefetch (touch)", all, cold with { PageIn = PageInMethod.Touch }),
            new("all disk, cold, copied, prefetch", all, cold with { DiskAccess = DiskAccess.Copied }),
            new("all disk, cold, direct, prefetch", all, cold with { DiskAccess = DiskAccess.Direct }),
            new("all disk, cold, copied, synchronous (Accelerate's scheme)", all, cold with { Prefetch = false, DiskAccess = DiskAccess.Copied }),
        ];
    }

    /// <summary>
    /// Runs one case: evicts the checkpoint from the page cache, opens a session, generates <paramref name="tokens"/>
    /// tokens greedily from token 1 (plus a short warm-up), and samples anonymous memory throughout.
    /// </summary>
    public static BenchmarkMeasurement Measure(string checkpointPath, BenchmarkCase benchmark, int tokens = 32, TextWriter? log = null)
    {
        var checkpoint = Checkpoint.Open(checkpointPath);
        foreach (var file in checkpoint.Files) PageIn.EvictFile(file);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long baseline = ProcessMemory.Read().RssAnonBytes;
        using var peak = new AnonymousMemoryPeak(TimeSpan.FromMilliseconds(2));
        var clock = Stopwatch.StartNew();
        using var session = InferenceSession.Open(checkpoint, benchmark.Placement, benchmark.Options);
        double load = clock.Elapsed.TotalSeconds;
        session.Generate([1], new GenerationOptions { MaxNewTokens = 3, StopTokenIds = [] });
        var waitBefore = session.PrefetchWait;
        var result = session.Generate([1], new GenerationOptions { MaxNewTokens = tokens + 1, StopTokenIds = [] }, _ => peak.Sample());
        peak.Sample();
        var decode = result.Timings.TokenLatencies.Skip(1).Select(t => t.TotalMilliseconds).ToArray();
        Array.Sort(decode);
        var report = session.LoadReport;
        long diskPerToken = report.Blocks.Where(b => b.Location == "disk").Sum(b => b.Bytes);
        var measurement = new BenchmarkMeasurement(
            benchmark.Name, decode.Length, load, result.Timings.FirstToken.TotalMilliseconds,
            decode.Length > 0 ? decode.Average() : 0, decode.Length > 0 ? decode[decode.Length / 2] : 0, decode.Length > 0 ? decode[0] : 0,
            (session.PrefetchWait - waitBefore).TotalMilliseconds / Math.Max(1, result.GeneratedIds.Count),
            baseline, peak.PeakBytes, report.HostResidentBytes, report.MappedBytes, report.StreamedBytes, report.PrefetchWindowBytes,
            diskPerToken, result.GeneratedIds);
        log?.WriteLine(Format(measurement));
        return measurement;
    }

    /// <summary>
    /// Runs every case <paramref name="rounds"/> times, interleaved (case 1, case 2, ..., case 1, ...), so that load
    /// from elsewhere on the machine spreads over all cases instead of skewing one, and keeps for each case the round
    /// whose mean decode latency is the median. Also returns the median storage read speed measured between rounds.
    /// </summary>
    public static (IReadOnlyList<BenchmarkMeasurement> Results, double DiskBytesPerSecond) RunRounds(string checkpointPath, IReadOnlyList<BenchmarkCase> cases,
        int tokens, int rounds, TextWriter? log = null)
    {
        var checkpoint = Checkpoint.Open(checkpointPath);
        var runs = cases.Select(_ => new List<BenchmarkMeasurement>()).ToList();
        var speeds = new List<double>();
        for (int round = 0; round < rounds; round++)
        {
            speeds.Add(MeasureReadBandwidth(checkpoint.Files[0]));
            log?.WriteLine(string.Create(CultureInfo.InvariantCulture, $"round {round + 1}/{rounds}: storage read {speeds[^1] / 1e9:F2} GB/s"));
            for (int i = 0; i < cases.Count; i++) runs[i].Add(Measure(checkpointPath, cases[i], tokens, log));
        }
        speeds.Sort();
        var results = runs.Select(r =>
        {
            var sorted = r.OrderBy(m => m.MeanDecodeMilliseconds).ToList();
            return sorted[sorted.Count / 2] with { RoundMeans = r.Select(m => m.MeanDecodeMilliseconds).ToList() };
        }).ToList();
        return (results, speeds[speeds.Count / 2]);
    }

    /// <summary>Sequential read speed of <paramref name="file"/> from storage (evicted from the page cache first), in bytes per second.</summary>
    public static double MeasureReadBandwidth(string file, long maxBytes = 1L << 30)
    {
        PageIn.EvictFile(file);
        var buffer = new byte[8 << 20];
        long total = 0;
        var clock = Stopwatch.StartNew();
        using (var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan))
        {
            int n;
            while (total < maxBytes && (n = stream.Read(buffer, 0, buffer.Length)) > 0) total += n;
        }
        double seconds = clock.Elapsed.TotalSeconds;
        PageIn.EvictFile(file);
        return total / Math.Max(seconds, 1e-9);
    }

    /// <summary>A Markdown table of the measurements, with the bound max(compute, disk read) for the disk cases.</summary>
    public static string ToMarkdown(IReadOnlyList<BenchmarkMeasurement> results, double? diskBytesPerSecond)
    {
        var resident = results.FirstOrDefault(r => r.MappedBytes == 0 && r.StreamedBytes == 0);
        var text = new StringBuilder();
        text.AppendLine("| case | decode ms/token (mean) | median | min | rounds (means) | bound ms | vs bound | prefetch wait ms/token | peak RssAnon | cpu-resident weights | disk bytes/token |");
        text.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in results)
        {
            double? bound = null;
            if (resident is not null && diskBytesPerSecond is double speed && r.DiskBytesPerToken > 0)
                bound = Math.Max(resident.MeanDecodeMilliseconds, r.DiskBytesPerToken / speed * 1000);
            text.Append(CultureInfo.InvariantCulture, $"| {r.Name} | {r.MeanDecodeMilliseconds:F1} | {r.MedianDecodeMilliseconds:F1} | {r.MinDecodeMilliseconds:F1} | ");
            text.Append(r.RoundMeans.Count > 1 ? string.Join(" / ", r.RoundMeans.Select(m => m.ToString("F0", CultureInfo.InvariantCulture))) : "—").Append(" | ");
            text.Append(bound is double b ? b.ToString("F1", CultureInfo.InvariantCulture) : "—").Append(" | ");
            text.Append(bound is double b2 ? (r.MeanDecodeMilliseconds / b2).ToString("F2", CultureInfo.InvariantCulture) + "×" : "—").Append(" | ");
            text.Append(CultureInfo.InvariantCulture, $"{r.PrefetchWaitMillisecondsPerToken:F1} | {IO.ByteSize.Format(r.PeakRssAnonBytes)} | {IO.ByteSize.Format(r.HostResidentBytes)} | {IO.ByteSize.Format(r.DiskBytesPerToken)} |");
            text.AppendLine();
        }
        return text.ToString();
    }

    private static string Format(BenchmarkMeasurement m) => string.Create(CultureInfo.InvariantCulture,
        $"{m.Name}: decode mean {m.MeanDecodeMilliseconds:F1} ms (median {m.MedianDecodeMilliseconds:F1}, min {m.MinDecodeMilliseconds:F1}), first token {m.FirstTokenMilliseconds:F0} ms, load {m.LoadSeconds:F2} s, prefetch wait {m.PrefetchWaitMillisecondsPerToken:F1} ms/token, RssAnon +{IO.ByteSize.Format(m.AddedRssAnonBytes)} (peak {IO.ByteSize.Format(m.PeakRssAnonBytes)}), host-resident {IO.ByteSize.Format(m.HostResidentBytes)}, mapped {IO.ByteSize.Format(m.MappedBytes)}, streamed {IO.ByteSize.Format(m.StreamedBytes)}, window {IO.ByteSize.Format(m.PrefetchWindowBytes)}");
}
