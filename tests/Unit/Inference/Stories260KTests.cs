using BigModel.Inference;
using BigModel.Tests.Inference.Support;
using BigModel.Tests.Support;

namespace BigModel.Tests.Inference;

/// <summary>The real trained stories260K Llama (GQA, tied embeddings): placements, offload modes and the reference.</summary>
[Collection(TorchCollection.Name)]
public sealed class Stories260KTests
{
    private static string Model => Requirements.Stories260K;

    private static readonly GenerationOptions Greedy = new() { MaxNewTokens = 40, StopTokenIds = [] };

    // One compute thread: a 64-wide model gains nothing from more, and stays fast on a busy machine.
    private static readonly InferenceOptions Base = new() { Threads = 1 };

    public static readonly Dictionary<string, string> CpuAndDisk = new()
    {
        ["model.embed_tokens"] = "cpu",
        ["model.layers.0"] = "cpu",
        ["model.layers.1"] = "disk",
        ["model.layers.2"] = "cpu",
        ["model.layers.3"] = "disk",
        ["model.layers.4"] = "disk",
        ["model.norm"] = "disk",
        ["lm_head"] = "cpu",
    };

    public static readonly Dictionary<string, string> AllDisk = new() { [""] = "disk" };

    private static IReadOnlyList<int> GenerateIds(IReadOnlyDictionary<string, string>? placement, InferenceOptions options, GenerationOptions? generation = null)
    {
        using var session = InferenceSession.Open(Model, placement, options);
        return session.Generate([1], generation ?? Greedy).GeneratedIds;
    }

    [InferenceFact(Needs.Stories260K)]
    public void Greedy_generation_is_identical_under_every_placement_and_offload_mode()
    {
        var expected = GenerateIds(null, Base);
        Assert.Equal(40, expected.Count);
        var modes = new (string Name, InferenceOptions Options)[]
        {
            ("prefetch, mapped", Base),
            ("prefetch depth 1, mapped, touch", Base with { PrefetchDepth = 1, PageIn = PageInMethod.Touch }),
            ("prefetch, mapped, willneed", Base with { PageIn = PageInMethod.WillNeed }),
            ("prefetch, mapped, read, pages released after use", Base with { PageIn = PageInMethod.Read, ReleaseDiskPages = true }),
            ("synchronous, mapped, pages released after use", Base with { Prefetch = false, ReleaseDiskPages = true }),
            ("prefetch depth 3, copied", Base with { PrefetchDepth = 3, DiskAccess = DiskAccess.Copied }),
            ("synchronous, mapped", Base with { Prefetch = false }),
            ("synchronous, copied", Base with { Prefetch = false, DiskAccess = DiskAccess.Copied }),
            ("prefetch, direct", Base with { DiskAccess = DiskAccess.Direct }),
            ("synchronous, direct", Base with { Prefetch = false, DiskAccess = DiskAccess.Direct }),
        };
        foreach (var placement in new[] { CpuAndDisk, AllDisk })
            foreach (var (name, options) in modes)
            {
                var ids = GenerateIds(placement, options);
                Assert.True(expected.SequenceEqual(ids), $"{name}, {placement.Count} entries: [{string.Join(",", ids)}] differs from [{string.Join(",", expected)}]");
            }
    }

    [InferenceFact(Needs.Stories260K)]
    public void Loading_reports_where_the_weights_went()
    {
        using (var resident = InferenceSession.Open(Model, null, Base))
        {
            Assert.Equal("cpu", resident.LoadReport.ExecutionDevice);
            Assert.Equal(0, resident.LoadReport.MappedBytes);
            Assert.Equal(8, resident.LoadReport.Blocks.Count);
            Assert.True(resident.LoadReport.HostResidentBytes > 1_000_000);
        }
        using var disk = InferenceSession.Open(Model, AllDisk, Base);
        Assert.Equal(0, disk.LoadReport.HostResidentBytes);
        Assert.Equal(0, disk.LoadReport.PrefetchWindowBytes);
        Assert.True(disk.LoadReport.MappedBytes > 1_000_000);
        Assert.All(disk.LoadReport.Blocks, b => Assert.Equal("disk", b.Location));
        // lm_head is tied: it computes with the embedding matrix, which the placement puts on disk.
        Assert.Equal("lm_head", disk.LoadReport.Blocks[^1].Name);
        disk.Generate([1], new GenerationOptions { MaxNewTokens = 3 });
        Assert.True(disk.BlocksPrepared >= 8);
    }

    [InferenceFact(Needs.Stories260K, Needs.PythonNumpy)]
    public void Logits_and_greedy_ids_match_the_numpy_reference()
    {
        var reference = PythonReference.RunJson("llama_reference.py", Model, "--ids", "1", "--generate", "30");
        var expectedIds = reference["generated"]!.AsArray().Select(v => v!.GetValue<int>()).ToArray();
        var expectedLogits = PythonReference.Matrix(reference["logits"]!);

        foreach (var placement in new[] { null, CpuAndDisk, AllDisk })
        {
            using var session = InferenceSession.Open(Model, placement, Base);
            var result = session.Generate([1], new GenerationOptions { MaxNewTokens = 30, StopTokenIds = [], ReturnScores = true });
            Assert.Equal(expectedIds, result.GeneratedIds);

            // Full-sequence forward pass (prefill path) against the reference at every position.
            var logits = session.Logits([1, .. expectedIds]);
            LogitAssert.Close(expectedLogits, logits, 1e-4);
            // Incremental decoding with the KV cache: step i predicts from position i.
            LogitAssert.Close(expectedLogits.Take(30).ToArray(), result.Scores!.ToArray(), 1e-4);
        }
    }

    [InferenceFact(Needs.Stories260K)]
    public void Sampling_with_a_seed_is_reproducible_across_placements()
    {
        var sampling = new GenerationOptions { MaxNewTokens = 40, Temperature = 0.9, TopK = 50, TopP = 0.95, RepetitionPenalty = 1.1, Seed = 1234, StopTokenIds = [] };
        var first = GenerateIds(null, Base, sampling);
        Assert.Equal(first, GenerateIds(null, Base, sampling));
        Assert.Equal(first, GenerateIds(AllDisk, Base, sampling));
        var other = GenerateIds(null, Base, new GenerationOptions { MaxNewTokens = 40, Temperature = 0.9, TopK = 50, TopP = 0.95, RepetitionPenalty = 1.1, Seed = 99, StopTokenIds = [] });
        Assert.NotEqual(first, other);
        Assert.NotEqual(GenerateIds(null, Base), first);
    }

    [InferenceFact(Needs.Stories260K)]
    public void Generation_stops_at_the_configured_eos()
    {
        using var session = InferenceSession.Open(Model, null, Base);
        Assert.Equal([2], session.EosTokenIds);
        var long_ = session.Generate([1], new GenerationOptions { MaxNewTokens = 300, StopTokenIds = [] });
        int eos = long_.GeneratedIds.ToList().IndexOf(2);
        var stopped = session.Generate([1], new GenerationOptions { MaxNewTokens = 300 });
        if (eos >= 0)
        {
            Assert.Equal(StopReason.EndOfSequence, stopped.StopReason);
            Assert.Equal(long_.GeneratedIds.Take(eos + 1), stopped.GeneratedIds);
        }
        else
        {
            Assert.Equal(StopReason.MaxNewTokens, stopped.StopReason);
        }
        Assert.Equal(stopped.GeneratedIds.Count, stopped.Timings.TokenLatencies.Count);
        Assert.True(stopped.Timings.FirstToken > TimeSpan.Zero);
        Assert.True(stopped.Timings.TokensPerSecond > 0);
    }
}
