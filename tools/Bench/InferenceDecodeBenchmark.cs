using System.Globalization;
using BigModel.Checkpoints;
using BigModel.Inference;

namespace BigModel.Bench;

/// <summary>
/// Decode latency and memory of the generated 1.19 GB F32 Llama (hidden 1024, intermediate 2816, 18 layers, 16
/// heads, vocab 32000, untied head): all-resident, the last half of the layers (plus norm and head) on disk, and
/// everything on disk; with prefetch or synchronously; with the page cache warm, or cold for every token. The
/// measuring is <see cref="InferenceBenchmark"/>; this renders it for docs/benchmarks.md.
/// </summary>
public sealed class InferenceDecodeBenchmark : IBenchmark
{
    public string Name => "decode";

    public string Run(BenchContext context)
    {
        var (folder, tiny) = context.DecodeModels();
        var checkpoint = Checkpoint.Open(folder);
        int tokens = context.Quick ? 8 : 16;
        var allDisk = new Dictionary<string, string> { [""] = "disk" };

        // Memory first, while the process holds nothing else: the tiny model's run is the runtime's own footprint.
        var runtime = InferenceBenchmark.Measure(tiny, new BenchmarkCase("runtime (tiny model, all disk)", allDisk, new InferenceOptions()), tokens, Console.Out);
        var memory = new[]
        {
            InferenceBenchmark.Measure(folder, new BenchmarkCase("all disk, mapped, prefetch, cold", allDisk, new InferenceOptions { ReleaseDiskPages = true }), tokens, Console.Out),
            InferenceBenchmark.Measure(folder, new BenchmarkCase("all disk, mapped, prefetch, warm", allDisk, new InferenceOptions()), tokens, Console.Out),
            InferenceBenchmark.Measure(folder, new BenchmarkCase("all disk, copied, prefetch depth 2, cold", allDisk, new InferenceOptions { ReleaseDiskPages = true, DiskAccess = DiskAccess.Copied }), tokens, Console.Out),
            InferenceBenchmark.Measure(folder, new BenchmarkCase("all disk, direct, prefetch depth 2, cold", allDisk, new InferenceOptions { ReleaseDiskPages = true, DiskAccess = DiskAccess.Direct }), tokens, Console.Out),
        };
        var memoryRows = memory.Select(m => string.Create(CultureInfo.InvariantCulture,
            $"| {m.Name} | {Mib(m.PeakRssAnonBytes)} | {Mib(m.PeakRssAnonBytes - runtime.PeakRssAnonBytes)} | {Mib(m.PrefetchWindowBytes)} |"));

        var cases = InferenceBenchmark.StandardCases(checkpoint);
        if (context.Quick) cases = cases.Where(c => !c.Name.Contains("(touch)") && !c.Name.Contains("(willneed)") && !c.Name.Contains("(populate)")).ToList();
        var (results, disk) = InferenceBenchmark.RunRounds(folder, cases, tokens, context.Quick ? 1 : 3, Console.Out);
        bool sameOutput = results.Select(r => string.Join(",", r.GeneratedIds)).Distinct().Count() == 1;
        return $"""
            ## Decoding with offloaded weights

            The generated 1.19 GB F32 Llama (hidden 1024, intermediate 2816, 18 layers, 16 heads, vocab 32000, untied head),
            greedy decoding from token 1, {tokens} tokens after the first, {ProcessorBudget.AvailableCores()} compute threads.
            "Half disk": embedding and layers 0–8 in host memory, layers 9–17, norm and head on disk (50 % of the bytes).
            "Cold": each disk block is dropped from the page cache after use, so every token reads it from storage again
            (a model larger than memory); "warm": the page cache keeps what was read. "Accelerate's scheme" loads each
            block when it is needed and drops it after, as Accelerate does, but reads with BigModel's large sequential
            reads into reused buffers (Accelerate copies out of a memory map page by page). The cases run interleaved in rounds;
            the table shows each case's median round. Storage read speed (sequential, median of the rounds):
            {(disk / 1e9).ToString("0.00", CultureInfo.InvariantCulture)} GB/s; the bound is max(resident decode, disk bytes per token ÷ that speed).
            All cases generated {(sameOutput ? "the same tokens" : "DIFFERENT tokens (a bug)")}.

            {InferenceBenchmark.ToMarkdown(results, disk)}
            Peak anonymous memory (RssAnon) with every block on disk, against the runtime's own footprint (a tiny model
            run first in the same process: {Mib(runtime.PeakRssAnonBytes)}):

            | case | peak RssAnon | above the runtime | prefetch window |
            |---|---|---|---|
            {string.Join("\n", memoryRows)}

            """;
    }

    private static string Mib(long bytes) => (bytes / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture) + " MiB";
}
