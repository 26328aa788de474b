using System.Globalization;
using BigModel.Checkpoints;
using BigModel.Fixtures.Synthetic;
using BigModel.Inference;

namespace BigModel.Bench;

/// <summary>
/// Decode latency of the generated 1.19 GB F32 Llama (hidden 1024, intermediate 2816, 18 layers, 16 heads, vocab
/// 32000, untied head): all-resident, the last half of the layers (plus norm and head) on disk, and everything on
/// disk; with prefetch or synchronously; with the page cache warm, or cold for every token (disk blocks dropped from
/// the page cache after use, as when the model does not fit in memory). The measuring is
/// <see cref="InferenceBenchmark"/>; this renders it for docs/benchmarks.md.
/// </summary>
public sealed class InferenceDecodeBenchmark : IBenchmark
{
    public string Name => "decode";

    public string Run(BenchContext context)
    {
        var folder = Path.Combine(context.ScratchDirectory, "llama-1b-f32");
        LlamaFixture.Generate(folder, new LlamaOptions());
        var checkpoint = Checkpoint.Open(folder);
        double disk = InferenceBenchmark.MeasureReadBandwidth(checkpoint.Files[0]);
        var cases = InferenceBenchmark.StandardCases(checkpoint);
        if (context.Quick) cases = cases.Where(c => !c.Name.Contains("(touch)") && !c.Name.Contains("(willneed)")).ToList();
        int tokens = context.Quick ? 8 : 24;
        var results = cases.Select(c => InferenceBenchmark.Measure(folder, c, tokens, Console.Out)).ToList();
        bool sameOutput = results.Select(r => string.Join(",", r.GeneratedIds)).Distinct().Count() == 1;
        return $"""
            ## Decoding with offloaded weights

            The generated 1.19 GB F32 Llama (hidden 1024, intermediate 2816, 18 layers, 16 heads, vocab 32000, untied head),
            greedy decoding from token 1, {tokens} tokens after the first, {ProcessorBudget.AvailableCores()} compute threads.
            "Half disk": embedding and layers 0–8 in host memory, layers 9–17, norm and head on disk (50 % of the bytes).
            "Cold": each disk block is dropped from the page cache after use, so every token reads it from storage again
            (a model larger than memory); "warm": the page cache keeps what was read. Sequential read from storage in this
            run: {(disk / 1e9).ToString("0.00", CultureInfo.InvariantCulture)} GB/s; the bound is max(resident decode, disk bytes per token ÷ that speed).
            "Added RssAnon" is the peak anonymous memory during the run above the process before the session opened.
            All cases generated {(sameOutput ? "the same tokens" : "DIFFERENT tokens (a bug)")}.

            {InferenceBenchmark.ToMarkdown(results, disk)}
            """;
    }
}
