using System.Text.Json.Nodes;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Inference;
using BigModel.Tests.Inference.Support;
using BigModel.Tests.Support;

namespace BigModel.Tests.Inference;

/// <summary>The session's contract: errors for bad input, budgets, cancellation, streaming, text in and out.</summary>
[Collection(TorchCollection.Name)]
public sealed class InferenceSessionTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private static readonly InferenceOptions Base = new() { Threads = 1 };
    private static readonly Dictionary<string, string> AllDisk = new() { [""] = "disk" };

    public void Dispose() => _dir.Dispose();

    private string Llama(string name = "llama", LlamaShape? shape = null, int seed = 21) =>
        RandomCheckpoints.WriteLlama(_dir.Combine(name), shape ?? new LlamaShape(), seed);

    [Fact]
    public void Unsupported_architectures_are_refused_with_the_runnable_list()
    {
        var folder = _dir.Combine("gpt2");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), """{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 8, "n_layer": 1, "n_head": 2, "vocab_size": 10, "n_positions": 8}""");
        SafetensorsBytes.Write(Path.Combine(folder, "model.safetensors"), """{"transformer.wte.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", SafetensorsBytes.Floats(1));
        var e = Assert.Throws<BigModelException>(() => InferenceSession.Open(folder, null, Base));
        Assert.Equal(BigModelErrorCode.UnsupportedArchitecture, e.Code);
        Assert.Contains("llama, mistral, qwen2, bert", e.Message);

        File.WriteAllText(Path.Combine(folder, "config.json"), """{"model_type": "mamba"}""");
        e = Assert.Throws<BigModelException>(() => InferenceSession.Open(folder, null, Base));
        Assert.Equal(BigModelErrorCode.UnsupportedArchitecture, e.Code);
        Assert.Contains("mamba", e.Message);
    }

    [Fact]
    public void A_checkpoint_that_does_not_match_its_config_lists_the_problems()
    {
        var folder = Llama();
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "config.json")))!;
        config["intermediate_size"] = 50;
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());
        var e = Assert.Throws<BigModelException>(() => InferenceSession.Open(folder, null, Base));
        Assert.Equal(BigModelErrorCode.CheckpointDoesNotMatchArchitecture, e.Code);
        Assert.Contains("mlp.gate_proj.weight' is [48, 32], the config implies [50, 32]", e.Message);
    }

    [Fact]
    public void A_missing_config_is_reported()
    {
        var folder = Llama();
        File.Delete(Path.Combine(folder, "config.json"));
        var e = Assert.Throws<BigModelException>(() => InferenceSession.Open(folder, null, Base));
        Assert.Equal(BigModelErrorCode.ConfigMissingValue, e.Code);
    }

    [Fact]
    public void Gpu_placements_on_a_machine_without_cuda_are_refused_before_loading()
    {
        if (TorchSharp.torch.cuda.is_available()) return;
        var e = Assert.Throws<BigModelException>(() => InferenceSession.Open(Llama(), new Dictionary<string, string> { [""] = "cpu", ["model.layers.0"] = "cuda:0" }, Base));
        Assert.Equal(BigModelErrorCode.DeviceUnavailable, e.Code);
        Assert.Contains("cuda:0", e.Message);
        var exec = Assert.Throws<BigModelException>(() => InferenceSession.Open(Llama("b"), null, Base with { ExecutionDevice = "cuda:1" }));
        Assert.Equal(BigModelErrorCode.DeviceUnavailable, exec.Code);
        var disk = Assert.Throws<BigModelException>(() => InferenceSession.Open(Llama("c"), null, Base with { ExecutionDevice = "disk" }));
        Assert.Equal(BigModelErrorCode.InvalidDevice, disk.Code);
    }

    [Fact]
    public void A_placement_that_leaves_a_module_uncovered_is_refused()
    {
        var e = Assert.Throws<BigModelException>(() => InferenceSession.Open(Llama(), new Dictionary<string, string> { ["model.layers"] = "cpu" }, Base));
        Assert.Equal(BigModelErrorCode.InvalidDeviceMap, e.Code);
        Assert.Equal("model.embed_tokens.weight", e.Tensor);
    }

    [Fact]
    public void Cpu_resident_weights_beyond_the_available_memory_are_refused_with_the_numbers()
    {
        var folder = Llama();
        long weights = Checkpoint.Open(folder).ByteLength;
        var e = Assert.Throws<BigModelException>(() => InferenceSession.Open(folder, new Dictionary<string, string> { [""] = "cpu" }, Base with { AvailableHostBytes = weights / 2 }));
        Assert.Equal(BigModelErrorCode.MemoryBudgetExceeded, e.Code);
        Assert.Contains(weights.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message);
        Assert.Contains((weights / 2).ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message);
        Assert.Contains("model.embed_tokens", e.Message);

        // Mapped disk blocks hold no anonymous memory: the same budget admits an all-disk placement.
        using var disk = InferenceSession.Open(folder, AllDisk, Base with { AvailableHostBytes = weights / 2 });
        Assert.Equal(0, disk.LoadReport.HostResidentBytes);
        // Copied disk blocks hold a prefetch window: the widest (depth + 1) consecutive blocks (two layers here), read
        // in page-aligned extents, which a budget one byte smaller cannot take.
        long layer = Checkpoint.Open(folder).Tensors.Where(t => t.Name.StartsWith("model.layers.0.", StringComparison.Ordinal)).Sum(t => t.ByteLength);
        var copied = Base with { DiskAccess = DiskAccess.Copied, PrefetchDepth = 1 };
        long windowBytes;
        using (var window = InferenceSession.Open(folder, AllDisk, copied with { AvailableHostBytes = 4 * layer }))
            windowBytes = window.LoadReport.PrefetchWindowBytes;
        Assert.InRange(windowBytes, 2 * layer, 2 * layer + 4 * 4096);
        using (InferenceSession.Open(folder, AllDisk, copied with { AvailableHostBytes = windowBytes })) { }
        Assert.Equal(BigModelErrorCode.MemoryBudgetExceeded,
            Assert.Throws<BigModelException>(() => InferenceSession.Open(folder, AllDisk, copied with { AvailableHostBytes = windowBytes - 1 })).Code);
        // A cache too large for what is left is refused too.
        var big = Assert.Throws<BigModelException>(() => disk.Generate([1], new GenerationOptions { MaxNewTokens = 1_000_000 }));
        Assert.Equal(BigModelErrorCode.MemoryBudgetExceeded, big.Code);
    }

    [Fact]
    public void A_disk_placed_embedding_table_is_looked_up_in_place_never_copied_whole()
    {
        var folder = Llama();
        long embedding = Checkpoint.Open(folder)["model.embed_tokens.weight"].ByteLength;
        using var session = InferenceSession.Open(folder, AllDisk, Base with { DiskAccess = DiskAccess.Copied });
        Assert.Equal(embedding, session.LoadReport.MappedBytes);
        Assert.Equal(Checkpoint.Open(folder).ByteLength - embedding, session.LoadReport.StreamedBytes);
        using var resident = InferenceSession.Open(folder, null, Base);
        Assert.Equal(resident.Generate([4, 5], new GenerationOptions { MaxNewTokens = 6, StopTokenIds = [] }).GeneratedIds,
            session.Generate([4, 5], new GenerationOptions { MaxNewTokens = 6, StopTokenIds = [] }).GeneratedIds);
    }

    [Fact]
    public void Bad_generation_input_is_refused()
    {
        using var session = InferenceSession.Open(Llama(), null, Base);
        Assert.Equal(BigModelErrorCode.InvalidGenerationInput, Assert.Throws<BigModelException>(() => session.Generate(Array.Empty<int>())).Code);
        Assert.Equal(BigModelErrorCode.InvalidGenerationInput, Assert.Throws<BigModelException>(() => session.Generate([1, 97])).Code);
        Assert.Equal(BigModelErrorCode.InvalidGenerationInput, Assert.Throws<BigModelException>(() => session.Generate([-1])).Code);
        Assert.Equal(BigModelErrorCode.InvalidArgument, Assert.Throws<BigModelException>(() => session.Generate([1], new GenerationOptions { TopP = 0 })).Code);
        Assert.Equal(BigModelErrorCode.InvalidArgument, Assert.Throws<BigModelException>(() => session.Generate([1], new GenerationOptions { Temperature = -1 })).Code);
        Assert.Equal(BigModelErrorCode.TokenizerMissing, Assert.Throws<BigModelException>(() => session.Generate("hello")).Code);
        Assert.Equal(BigModelErrorCode.ModelKindMismatch, Assert.Throws<BigModelException>(() => session.Embed([(IReadOnlyList<int>)[1]])).Code);
        Assert.Empty(session.Generate([1], new GenerationOptions { MaxNewTokens = 0 }).GeneratedIds);
    }

    [Fact]
    public void Invalid_options_are_refused()
    {
        var folder = Llama();
        Assert.Equal(BigModelErrorCode.InvalidArgument, Assert.Throws<BigModelException>(() => InferenceSession.Open(folder, null, Base with { PrefetchDepth = 0 })).Code);
        Assert.Equal(BigModelErrorCode.InvalidDType, Assert.Throws<BigModelException>(() => InferenceSession.Open(folder, null, Base with { DType = DType.I8 })).Code);
        Assert.Equal(BigModelErrorCode.TokenizerMissing, Assert.Throws<BigModelException>(() => InferenceSession.Open(folder, null, Base with { TokenizerPath = _dir.Combine("none.json") })).Code);
        File.WriteAllText(_dir.Combine("bad.json"), "{ not json");
        Assert.Equal(BigModelErrorCode.TokenizerInvalid, Assert.Throws<BigModelException>(() => InferenceSession.Open(folder, null, Base with { TokenizerPath = _dir.Combine("bad.json") })).Code);
    }

    [Fact]
    public void Cancellation_stops_between_tokens_and_returns_what_was_generated()
    {
        using var session = InferenceSession.Open(Llama(), AllDisk, Base);
        var full = session.Generate([1, 2], new GenerationOptions { MaxNewTokens = 10, StopTokenIds = [] });
        using var cancel = new CancellationTokenSource();
        var streamed = new List<int>();
        var partial = session.Generate([1, 2], new GenerationOptions { MaxNewTokens = 10, StopTokenIds = [] }, t =>
        {
            streamed.Add(t.Id);
            if (t.Index == 2) cancel.Cancel();
        }, cancel.Token);
        Assert.Equal(StopReason.Cancelled, partial.StopReason);
        Assert.Equal(full.GeneratedIds.Take(3), partial.GeneratedIds);
        Assert.Equal(partial.GeneratedIds, streamed);
        // The prefetcher was left mid-cycle; the next generation resynchronises and computes the same tokens.
        Assert.Equal(full.GeneratedIds, session.Generate([1, 2], new GenerationOptions { MaxNewTokens = 10, StopTokenIds = [] }).GeneratedIds);
    }

    [Fact]
    public void Cancellation_between_blocks_of_a_forward_pass_also_stops_cleanly()
    {
        using var session = InferenceSession.Open(Llama(shape: new LlamaShape { Layers = 6 }), AllDisk, Base);
        var expected = session.Generate([1, 2, 3], new GenerationOptions { MaxNewTokens = 4, StopTokenIds = [] }).GeneratedIds;
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        var none = session.Generate([1, 2, 3], new GenerationOptions { MaxNewTokens = 4 }, null, cancel.Token);
        Assert.Equal(StopReason.Cancelled, none.StopReason);
        Assert.Empty(none.GeneratedIds);
        Assert.Equal(expected, session.Generate([1, 2, 3], new GenerationOptions { MaxNewTokens = 4, StopTokenIds = [] }).GeneratedIds);
    }

    [Fact]
    public async Task Streaming_yields_every_token_in_order_and_stops_when_the_consumer_does()
    {
        using var session = InferenceSession.Open(Llama(), null, Base);
        var expected = session.Generate([5], new GenerationOptions { MaxNewTokens = 6, StopTokenIds = [] }).GeneratedIds;
        var tokens = new List<GeneratedToken>();
        await foreach (var t in session.GenerateStreamAsync([5], new GenerationOptions { MaxNewTokens = 6, StopTokenIds = [] }))
            tokens.Add(t);
        Assert.Equal(expected, tokens.Select(t => t.Id));
        Assert.Equal(Enumerable.Range(0, 6), tokens.Select(t => t.Index));

        int seen = 0;
        await foreach (var _ in session.GenerateStreamAsync([5], new GenerationOptions { MaxNewTokens = 1000, StopTokenIds = [] }))
            if (++seen == 2) break;
        // The abandoned generation released the session: another call runs at once.
        Assert.Equal(expected, session.Generate([5], new GenerationOptions { MaxNewTokens = 6, StopTokenIds = [] }).GeneratedIds);
    }

    [Fact]
    public void Text_prompts_are_tokenized_and_the_output_is_decoded_and_streamed_as_text()
    {
        var words = Enumerable.Range(0, 94).Select(i => "w" + i).ToArray();
        var folder = Llama("text");
        TestTokenizers.WriteWordLevel(Path.Combine(folder, "tokenizer.json"), words);
        using var session = InferenceSession.Open(folder, null, Base);
        Assert.NotNull(session.Tokenizer);
        Assert.Equal([1, 3, 4, 5], session.Tokenizer!.Encode("w0 w1 w2"));
        var pieces = new List<string?>();
        var result = session.Generate("w0 w1 w2", new GenerationOptions { MaxNewTokens = 5, StopTokenIds = [] }, t => pieces.Add(t.Text));
        Assert.Equal("w0 w1 w2", result.Prompt);
        Assert.Equal([1, 3, 4, 5], result.InputIds);
        Assert.Equal(session.Generate([1, 3, 4, 5], new GenerationOptions { MaxNewTokens = 5, StopTokenIds = [] }).GeneratedIds, result.GeneratedIds);
        Assert.Equal(session.Tokenizer.Decode(result.GeneratedIds), result.Text);
        Assert.Equal(result.Text, string.Concat(pieces));
    }

    [Fact]
    public void Eos_ids_come_from_generation_config_before_config()
    {
        var folder = Llama(shape: new LlamaShape { EosTokenIds = [2, 7] });
        using (var s = InferenceSession.Open(folder, null, Base)) Assert.Equal([2, 7], s.EosTokenIds);
        File.WriteAllText(Path.Combine(folder, "generation_config.json"), """{"bos_token_id": 1, "eos_token_id": 9}""");
        using (var s = InferenceSession.Open(folder, null, Base)) Assert.Equal([9], s.EosTokenIds);
        using var session = InferenceSession.Open(folder, null, Base);
        var free = session.Generate([1], new GenerationOptions { MaxNewTokens = 30, StopTokenIds = [] }).GeneratedIds;
        int stop = free[4];
        var stopped = session.Generate([1], new GenerationOptions { MaxNewTokens = 30, StopTokenIds = [stop] });
        Assert.Equal(StopReason.EndOfSequence, stopped.StopReason);
        Assert.Equal(stop, stopped.GeneratedIds[^1]);
        Assert.True(stopped.GeneratedIds.Count <= 5);
    }

    [Fact]
    public void Loading_reports_progress_per_block()
    {
        var reports = new List<InferenceLoadProgress>();
        var progress = new SynchronousProgress<InferenceLoadProgress>(reports.Add);
        using var session = InferenceSession.Open(Llama(), null, Base, progress);
        Assert.Contains(reports, r => r.Stage == "Loading" && r.Block == "model.layers.2");
        var last = reports[^1];
        Assert.Equal("Loaded", last.Stage);
        Assert.Equal(6, last.BlocksDone);
        Assert.Equal(last.BytesTotal, last.BytesDone);
    }

    [Fact]
    public void A_disposed_session_refuses_work()
    {
        var session = InferenceSession.Open(Llama(), AllDisk, Base);
        session.Dispose();
        session.Dispose();
        Assert.Throws<ObjectDisposedException>(() => session.Generate([1]));
    }

    [Fact]
    public void The_checkpoint_file_is_never_modified()
    {
        var folder = Llama();
        var file = Path.Combine(folder, "model.safetensors");
        var before = File.ReadAllBytes(file);
        var stamp = File.GetLastWriteTimeUtc(file);
        using (var session = InferenceSession.Open(folder, AllDisk, Base))
            session.Generate([1], new GenerationOptions { MaxNewTokens = 5 });
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(file));
        Assert.Equal(before, File.ReadAllBytes(file));
    }

    [Fact]
    public void Default_threads_follow_the_cores_the_process_may_use()
    {
        using var session = InferenceSession.Open(Llama(), null, new InferenceOptions());
        Assert.Equal(ProcessorBudget.AvailableCores(), session.Threads);
        Assert.Equal(session.Threads, TorchSharp.torch.get_num_threads());
    }

    [Fact]
    public void Results_do_not_change_under_constant_garbage_collection()
    {
        // TorchSharp frees native scalars and tensors from finalizers; collections during compute must not reach
        // anything a native call is still using.
        var folder = Llama(shape: new LlamaShape { Layers = 4 });
        var generation = new GenerationOptions { MaxNewTokens = 12, StopTokenIds = [] };
        var cases = new (Dictionary<string, string>? Placement, InferenceOptions Options)[]
        {
            (null, Base),
            (AllDisk, Base with { DiskAccess = DiskAccess.Copied }),
            (AllDisk, Base with { PrefetchDepth = 1 }),
            (AllDisk, Base with { DiskAccess = DiskAccess.Direct }),
            (AllDisk, Base with { Prefetch = false, DiskAccess = DiskAccess.Copied, DType = DType.F64 }),
        };
        var expected = cases.Select(c =>
        {
            using var s = InferenceSession.Open(folder, c.Placement, c.Options);
            return (s.Generate([1, 2, 3], generation).GeneratedIds, s.Logits([1, 2, 3, 4]));
        }).ToList();
        bool stop = false;
        var collector = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        });
        collector.Start();
        try
        {
            for (int round = 0; round < 3; round++)
                for (int i = 0; i < cases.Length; i++)
                {
                    using var s = InferenceSession.Open(folder, cases[i].Placement, cases[i].Options);
                    Assert.Equal(expected[i].GeneratedIds, s.Generate([1, 2, 3], generation).GeneratedIds);
                    Assert.Equal(expected[i].Item2, s.Logits([1, 2, 3, 4]));
                }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            collector.Join();
        }
    }

    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
