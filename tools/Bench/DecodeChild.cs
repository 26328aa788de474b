using System.Diagnostics;
using System.Text.Json;
using BigModel.Checkpoints;
using BigModel.DeviceMaps;
using BigModel.Errors;
using BigModel.Inference;
using BigModel.Memory;

namespace BigModel.Bench;

/// <summary>
/// One decode run in a process of its own, so a benchmark can put it in a memory cgroup:
/// <c>BigModel.Bench --decode-child FOLDER [--tokens N] [--resident] [--max-memory TEXT] [--disk-access auto|mapped|copied|direct] [--prefetch-depth N] [--no-prefetch] [--page-in read|populate|willneed|touch]</c>. Without
/// <c>--resident</c> or <c>--max-memory</c> the placement is what a user gets by default: the cpu budget is the memory
/// this process may still use (cgroup limit included), the rest goes to disk. Answers with one JSON line.
/// </summary>
public static class DecodeChild
{
    public static int Run(string[] args)
    {
        string folder = args[1];
        int tokens = 8;
        bool resident = false;
        string? maxMemory = null;
        var options = new InferenceOptions();
        for (int i = 2; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--tokens": tokens = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture); break;
                case "--resident": resident = true; break;
                case "--max-memory": maxMemory = args[++i]; break;
                case "--disk-access": options = options with { DiskAccess = Enum.Parse<DiskAccess>(args[++i], ignoreCase: true) }; break;
                case "--prefetch-depth": options = options with { PrefetchDepth = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture) }; break;
                case "--no-prefetch": options = options with { Prefetch = false }; break;
                case "--page-in": options = options with { PageIn = Enum.Parse<PageInMethod>(args[++i], ignoreCase: true) }; break;
                default: throw new ArgumentException($"unknown argument '{args[i]}'");
            }
        }
        var memory = SystemMemory.Read();
        try
        {
            var checkpoint = Checkpoint.Open(folder);
            var clock = Stopwatch.StartNew();
            IReadOnlyDictionary<string, string> placement = resident
                ? new Dictionary<string, string> { [""] = "cpu" }
                : InferencePlacement.Resolve(checkpoint, null, null, maxMemory is null ? null : MaxMemory.ParseText(maxMemory), null, tokens + 8, options.BlocksAhead).ToPlacement();
            using var session = InferenceSession.Open(checkpoint, placement, options with { AvailableHostBytes = memory.AvailableBytes });
            double load = clock.Elapsed.TotalSeconds;
            var result = session.Generate([1], new GenerationOptions { MaxNewTokens = tokens + 1, StopTokenIds = [] });
            var report = session.LoadReport;
            var process = ProcessMemory.Read();
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                ok = true,
                availableBytes = memory.AvailableBytes,
                availableSource = memory.Source,
                loadSeconds = load,
                firstTokenMs = result.Timings.FirstToken.TotalMilliseconds,
                decodeMs = result.Timings.TokenLatencies.Skip(1).Select(t => t.TotalMilliseconds).ToArray(),
                generatedIds = result.GeneratedIds,
                hostResidentBytes = report.HostResidentBytes,
                mappedBytes = report.MappedBytes,
                streamedBytes = report.StreamedBytes,
                prefetchWindowBytes = report.PrefetchWindowBytes,
                diskAccess = report.DiskAccess.ToString(),
                diskBytesPerToken = report.DiskBytesPerToken,
                rssAnonBytes = process.RssAnonBytes,
                rssFileBytes = process.RssFileBytes,
                peakRssBytes = process.PeakRssBytes,
                cpuBlocks = report.Blocks.Count(b => b.Location == "cpu"),
                diskBlocks = report.Blocks.Count(b => b.Location == "disk"),
            }));
            return 0;
        }
        catch (BigModelException e)
        {
            Console.WriteLine(JsonSerializer.Serialize(new { ok = false, code = e.BuildCode, message = e.Message, availableBytes = memory.AvailableBytes }));
            return 1;
        }
    }
}
