using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Errors;
using TorchSharp;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>What a loaded model does.</summary>
public enum InferenceTask
{
    /// <summary>Decoder-only language model: <see cref="InferenceSession.Generate(string, GenerationOptions?, Action{GeneratedToken}?, CancellationToken)"/>.</summary>
    TextGeneration,
    /// <summary>Encoder producing sentence vectors: <see cref="InferenceSession.Embed(IReadOnlyList{string}, EmbeddingOptions?, CancellationToken)"/>.</summary>
    Embeddings,
}

/// <summary>Where one block ended up.</summary>
public sealed record BlockPlacement(string Name, string Location, string ComputeDevice, long Bytes);

/// <summary>What loading did and what the weights cost where.</summary>
public sealed record InferenceLoadReport(
    string ExecutionDevice,
    TimeSpan LoadTime,
    long HostResidentBytes,
    long DeviceResidentBytes,
    long MappedBytes,
    long StreamedBytes,
    long PrefetchWindowBytes,
    IReadOnlyList<BlockPlacement> Blocks,
    string? OffloadFile)
{
    /// <summary>How disk-placed weights reach the computation in this session (<see cref="DiskAccess.Auto"/> resolved).</summary>
    public DiskAccess DiskAccess { get; init; }

    /// <summary>Bytes a forward pass reads from the weight files when none are cached (tables only looked up in excluded).</summary>
    public long DiskBytesPerToken { get; init; }
}

/// <summary>
/// A model loaded for inference according to a placement (module name → "cuda:N" | "cpu" | "disk", Accelerate's
/// semantics). Open it once, then generate text or compute embeddings as often as needed; dispose it to free the
/// weights and unmap the files. Calls on one session run one at a time.
/// </summary>
public sealed class InferenceSession : IDisposable
{
    private readonly object _gate = new();
    private readonly InferenceOptions _options;
    private readonly LlamaModel? _llama;
    private readonly BertModel? _bert;
    private readonly WeightReader _reader;
    private readonly WeightPipeline _pipeline;
    private readonly WeightPlan _plan;
    private readonly ModelFolderSettings _settings;
    private readonly ScalarType _computeType;
    private readonly DecodeKernel? _kernel;
    private bool _disposed;

    private InferenceSession(Checkpoint checkpoint, ArchitectureSpec spec, InferenceOptions options, LlamaModel? llama, BertModel? bert,
        WeightReader reader, WeightPlan plan, WeightPipeline pipeline, TextTokenizer? tokenizer, ModelFolderSettings settings,
        ScalarType computeType, int threads, DecodeKernel? kernel, InferenceLoadReport report)
    {
        _kernel = kernel;
        Checkpoint = checkpoint;
        Architecture = spec;
        _options = options;
        _llama = llama;
        _bert = bert;
        _reader = reader;
        _plan = plan;
        _pipeline = pipeline;
        Tokenizer = tokenizer;
        _settings = settings;
        _computeType = computeType;
        Threads = threads;
        LoadReport = report;
    }

    public Checkpoint Checkpoint { get; }

    public ArchitectureSpec Architecture { get; }

    public InferenceTask Task => _llama is not null ? InferenceTask.TextGeneration : InferenceTask.Embeddings;

    /// <summary>The model's tokenizer (tokenizer.json), when it has one.</summary>
    public TextTokenizer? Tokenizer { get; }

    /// <summary>Threads torch computes with.</summary>
    public int Threads { get; }

    /// <summary>
    /// What computes the one-token linear layers: <see cref="Inference.LinearKernel.Native"/> when the native decode
    /// kernel is in use (on the CPU), else <see cref="Inference.LinearKernel.LibTorch"/>.
    /// </summary>
    public LinearKernel LinearKernel => _kernel is null ? LinearKernel.LibTorch : LinearKernel.Native;

    /// <summary>Linear-layer calls the native kernel computed since the session opened (the others went to libtorch).</summary>
    public long NativeLinearCalls => _kernel?.KernelCalls ?? 0;

    /// <summary>Decoder layers run whole by the native one-token path (<see cref="OneTokenLayer"/>) since the session opened.</summary>
    public long NativeLayerSteps => _llama?.NativeLayerSteps ?? 0;

    /// <summary>Layer boundaries at which the other cores read the next layer's first weights ahead (resident layers, two or more threads).</summary>
    internal long NextLayerWarms => _llama?.NextLayerWarms ?? 0;

    /// <summary>Wall time the native kernel spent in those calls (the rest of a step is libtorch and the engine).</summary>
    public TimeSpan NativeLinearTime => _kernel?.KernelTime ?? TimeSpan.Zero;

    public InferenceLoadReport LoadReport { get; }

    /// <summary>Ids that end generation unless <see cref="GenerationOptions.StopTokenIds"/> says otherwise.</summary>
    public IReadOnlyList<int> EosTokenIds => _settings.EosTokenIds;

    /// <summary>Offloaded blocks brought in since the session opened.</summary>
    public long BlocksPrepared => _pipeline.BlocksPrepared;

    /// <summary>Time computation spent waiting for prefetched blocks since the session opened.</summary>
    public TimeSpan PrefetchWait => _pipeline.WaitTime;

    // ---------------------------------------------------------------- opening

    /// <summary>Opens the checkpoint at <paramref name="path"/> (file, index or folder) and loads it; see the other overload.</summary>
    public static InferenceSession Open(string path, IReadOnlyDictionary<string, string>? placement = null, InferenceOptions? options = null,
        IProgress<InferenceLoadProgress>? progress = null, CancellationToken cancel = default) =>
        Open(Checkpoint.Open(path), placement, options, progress, cancel);

    /// <summary>
    /// Loads <paramref name="checkpoint"/> for inference. <paramref name="placement"/> maps module names to
    /// "cuda:N", "cpu" or "disk" (a key covers its module and everything below it, "" the whole model); null or
    /// empty puts everything on the execution device. Nothing is allocated for the model before the placement has
    /// been checked against <see cref="InferenceOptions.AvailableHostBytes"/>.
    /// </summary>
    public static InferenceSession Open(Checkpoint checkpoint, IReadOnlyDictionary<string, string>? placement = null, InferenceOptions? options = null,
        IProgress<InferenceLoadProgress>? progress = null, CancellationToken cancel = default)
    {
        var clock = Stopwatch.StartNew();
        options = (options ?? new InferenceOptions()).Validate();
        var config = checkpoint.Config ?? throw new BigModelException(BigModelErrorCode.ConfigMissingValue,
            "config.json is required to run a model; it was not found beside the weights.", checkpoint.Directory);
        var spec = RequireRunnable(config);

        int threads = options.Threads ?? ProcessorBudget.AvailableCores();
        TorchRuntime.Initialise(threads);

        placement = placement is { Count: > 0 } ? placement : new Dictionary<string, string> { [""] = options.ExecutionDevice ?? "cpu" };
        var resolver = new PlacementResolver(placement);
        var execution = ExecutionLocation(options, placement);
        CheckDevices(resolver.Locations.Append(execution));

        progress?.Report(new InferenceLoadProgress("Planning", null, 0, 0, 0, checkpoint.ByteLength));
        bool computesOnCpu = execution.Kind != WeightLocationKind.Cuda && resolver.Locations.All(l => l.Kind != WeightLocationKind.Cuda);
        var kernel = CreateKernel(options, threads, computesOnCpu);
        LlamaModel? llama = null;
        BertModel? bert = null;
        IReadOnlyList<ModelBlock> blocks;
        WeightReader? reader = null;
        WeightPipeline? pipeline = null;
        TextTokenizer? tokenizer = null;
        try
        {
            if (spec.IsDecoder) blocks = (llama = LlamaModel.Create(checkpoint, spec, config, kernel)).Blocks;
            else blocks = (bert = BertModel.Create(checkpoint, spec, config, kernel)).Blocks;

            string? offloadFile = null;
            if (checkpoint.Format is CheckpointFormat.PyTorch or CheckpointFormat.ShardedPyTorch)
                (blocks, offloadFile) = OffloadPyTorchWeights(checkpoint, blocks, resolver, options, progress, cancel);

            ScalarType? floatType = options.DType is DType d && TorchTypes.TryScalarType(d, out var st) ? st : null;
            reader = new WeightReader(floatType);
            (options, var plan) = PlanWeights(blocks, resolver, execution, reader, options, checkpoint.Path);
            var settings = ModelFolderSettings.Read(checkpoint.Directory, config);
            tokenizer = LoadTokenizer(checkpoint, options);

            pipeline = new WeightPipeline(plan, reader, options);
            pipeline.LoadResident(progress, cancel);
            var computeType = blocks.SelectMany(b => b.Tensors).Select(t => reader.TargetType(t.Source)).FirstOrDefault(TorchTypes.IsFloating, ScalarType.Float32);

            var report = new InferenceLoadReport(execution.ToString(), clock.Elapsed, plan.HostResidentBytes, plan.DeviceResidentBytes, plan.MappedBytes,
                plan.StreamedBytes, plan.WindowBytes, Describe(plan), offloadFile) { DiskAccess = options.DiskAccess, DiskBytesPerToken = plan.DiskBytesPerToken };
            return new InferenceSession(checkpoint, spec, options, llama, bert, reader, plan, pipeline, tokenizer, settings, computeType, threads, kernel, report);
        }
        catch (Exception e)
        {
            pipeline?.Dispose();
            reader?.Dispose();
            kernel?.Dispose();
            tokenizer?.Dispose();
            if (e is ExternalException ee) throw TorchFailure(ee);
            throw;
        }
    }

    /// <summary>
    /// The weight plan, with <see cref="DiskAccess.Auto"/> and a null <see cref="InferenceOptions.ReleaseDiskPages"/>
    /// resolved, refused before loading when it exceeds the host budget. Where memory cannot keep the disk-placed
    /// weights cached anyway, caching them only makes the kernel reclaim pages mid-read: they are read past the page
    /// cache (or, where even the staging ring does not fit, mapped and released after use).
    /// </summary>
    private static (InferenceOptions Options, WeightPlan Plan) PlanWeights(IReadOnlyList<ModelBlock> blocks, PlacementResolver resolver,
        WeightLocation execution, WeightReader reader, InferenceOptions options, string file)
    {
        var plan = WeightPlan.Create(blocks, resolver, execution, reader, options, file);
        plan.CheckHostBudget(options.AvailableHostBytes, file);
        bool cannotCache = plan.CannotCacheDiskWeights(options.AvailableHostBytes);
        var resolved = options with
        {
            DiskAccess = options.DiskAccess == DiskAccess.Auto ? (cannotCache ? DiskAccess.Direct : DiskAccess.Mapped) : options.DiskAccess,
            ReleaseDiskPages = options.ReleaseDiskPages ?? (cannotCache ? true : null),
        };
        if (resolved == options) return (options, plan);
        var replanned = WeightPlan.Create(blocks, resolver, execution, reader, resolved, file);
        if (resolved.DiskAccess == DiskAccess.Direct && options.DiskAccess == DiskAccess.Auto && !replanned.FitsHostBudget(options.AvailableHostBytes))
        {
            resolved = resolved with { DiskAccess = DiskAccess.Mapped };
            replanned = WeightPlan.Create(blocks, resolver, execution, reader, resolved, file);
        }
        replanned.CheckHostBudget(resolved.AvailableHostBytes, file);
        return (resolved, replanned);
    }

    /// <summary>The native decode kernel when it is asked for (or left to choose) and the layers compute on this CPU.</summary>
    private static DecodeKernel? CreateKernel(InferenceOptions options, int threads, bool computesOnCpu)
    {
        if (options.LinearKernel == LinearKernel.LibTorch) return null;
        if (!DecodeKernel.IsSupported)
        {
            if (options.LinearKernel == LinearKernel.Native)
                throw new BigModelException(BigModelErrorCode.DeviceUnavailable,
                    "the native linear kernel needs a processor with AVX2 and FMA (or AVX-512), which this one lacks; use LinearKernel Auto or LibTorch.");
            return null;
        }
        return computesOnCpu ? new DecodeKernel(threads) : null;
    }

    private static ArchitectureSpec RequireRunnable(ModelConfig config)
    {
        ArchitectureSpec? spec;
        try
        {
            spec = ArchitectureCatalog.Require(config);
        }
        catch (BigModelException e) when (e.Code == BigModelErrorCode.UnsupportedArchitecture)
        {
            spec = null;
        }
        if (spec is not null && ArchitectureCatalog.Runnable.Contains(spec)) return spec;
        throw new BigModelException(BigModelErrorCode.UnsupportedArchitecture,
            $"model_type '{config.ModelType ?? "(none)"}' / architecture '{config.Architecture ?? "(none)"}' cannot be run; the inference engine runs: {string.Join(", ", ArchitectureCatalog.Runnable.SelectMany(s => s.ModelTypes))}.",
            config.Path);
    }

    private static WeightLocation ExecutionLocation(InferenceOptions options, IReadOnlyDictionary<string, string> placement)
    {
        if (options.ExecutionDevice is string text)
        {
            var parsed = WeightLocation.Parse(text, "execution device");
            if (parsed.Kind == WeightLocationKind.Disk)
                throw new BigModelException(BigModelErrorCode.InvalidDevice, "the execution device must be \"cpu\" or \"cuda:N\", not \"disk\".");
            return parsed;
        }
        // Accelerate's main device: the first GPU the placement uses, else the CPU.
        foreach (var (module, device) in placement)
            if (WeightLocation.Parse(device, module) is { Kind: WeightLocationKind.Cuda } l) return l;
        return WeightLocation.Cpu;
    }

    private static void CheckDevices(IEnumerable<WeightLocation> locations)
    {
        var cudaIndexes = locations.Where(l => l.Kind == WeightLocationKind.Cuda).Select(l => l.DeviceIndex).Distinct().ToList();
        if (cudaIndexes.Count == 0) return;
        int count = cuda.is_available() ? cuda.device_count() : 0;
        var missing = cudaIndexes.Where(i => i >= count).ToList();
        if (missing.Count > 0)
            throw new BigModelException(BigModelErrorCode.DeviceUnavailable,
                $"the placement uses {string.Join(", ", missing.Select(i => "cuda:" + i))} but this machine has {(count == 0 ? "no usable CUDA device (or the CPU build of libtorch is in use)" : $"{count} CUDA device(s)")}; place those blocks on \"cpu\" or \"disk\".");
    }

    private static (IReadOnlyList<ModelBlock>, string?) OffloadPyTorchWeights(Checkpoint checkpoint, IReadOnlyList<ModelBlock> blocks, PlacementResolver resolver,
        InferenceOptions options, IProgress<InferenceLoadProgress>? progress, CancellationToken cancel)
    {
        var disk = blocks.SelectMany(b => b.Tensors).Select(t => t.Source)
            .Where(t => resolver.Require(t.Name, checkpoint.Path).Kind == WeightLocationKind.Disk)
            .DistinctBy(t => t.Name).ToList();
        if (disk.Count == 0) return (blocks, null);
        var folder = options.OffloadFolder ?? Path.Combine(Path.GetTempPath(), "bigmodel-offload");
        var converted = OffloadConverter.Convert(disk, folder, progress, cancel);
        var rebuilt = blocks.Select(b => new ModelBlock(b.Index, b.Name,
            b.Tensors.Select(t => converted.TryGetValue(t.Source.Name, out var c) ? new BlockTensor(t.Key, c) : t).ToList())).ToList();
        return (rebuilt, converted.Values.First().File);
    }

    private static TextTokenizer? LoadTokenizer(Checkpoint checkpoint, InferenceOptions options)
    {
        if (options.TokenizerPath is string explicitPath) return TextTokenizer.Load(explicitPath);
        var beside = Path.Combine(checkpoint.Directory, "tokenizer.json");
        return File.Exists(beside) ? TextTokenizer.Load(beside) : null;
    }

    private static IReadOnlyList<BlockPlacement> Describe(WeightPlan plan) => plan.Routes.Select(r =>
    {
        var locations = r.Block.Tensors.Select(t => plan.Slots[t.Source.Name].Location.ToString()).Distinct().ToList();
        return new BlockPlacement(r.Block.Name, locations.Count == 1 ? locations[0] : "mixed", r.Compute.ToString(), r.Block.StoredBytes);
    }).ToList();

    // ---------------------------------------------------------------- text generation

    /// <summary>Tokenizes <paramref name="prompt"/> (special tokens such as BOS added as the tokenizer says) and continues it.</summary>
    public GenerationResult Generate(string prompt, GenerationOptions? options = null, Action<GeneratedToken>? onToken = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var tokenizer = RequireTokenizer();
        return Generate(prompt, tokenizer.Encode(prompt), options, onToken, cancel);
    }

    /// <summary>Continues the token ids <paramref name="inputIds"/> (for models without a tokenizer, or exact control).</summary>
    public GenerationResult Generate(IReadOnlyList<int> inputIds, GenerationOptions? options = null, Action<GeneratedToken>? onToken = null, CancellationToken cancel = default) =>
        Generate(null, inputIds, options, onToken, cancel);

    /// <summary>Streams the tokens of <see cref="Generate(string, GenerationOptions?, Action{GeneratedToken}?, CancellationToken)"/> as they are produced; ends early, without error, when cancelled.</summary>
    public IAsyncEnumerable<GeneratedToken> GenerateStreamAsync(string prompt, GenerationOptions? options = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var ids = RequireTokenizer().Encode(prompt);
        return Stream(prompt, ids, options, cancel);
    }

    /// <summary>Streams the tokens generated from <paramref name="inputIds"/>; ends early, without error, when cancelled.</summary>
    public IAsyncEnumerable<GeneratedToken> GenerateStreamAsync(IReadOnlyList<int> inputIds, GenerationOptions? options = null, CancellationToken cancel = default) =>
        Stream(null, inputIds, options, cancel);

    private async IAsyncEnumerable<GeneratedToken> Stream(string? prompt, IReadOnlyList<int> ids, GenerationOptions? options, [EnumeratorCancellation] CancellationToken cancel)
    {
        var channel = Channel.CreateUnbounded<GeneratedToken>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        var worker = System.Threading.Tasks.Task.Factory.StartNew(() =>
        {
            try
            {
                Generate(prompt, ids, options, t => channel.Writer.TryWrite(t), stop.Token);
                channel.Writer.TryComplete();
            }
            catch (Exception e)
            {
                channel.Writer.TryComplete(e);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            while (await channel.Reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
                while (channel.Reader.TryRead(out var token))
                    yield return token;
        }
        finally
        {
            // A consumer that stops early stops the generation too.
            stop.Cancel();
            await worker.ConfigureAwait(false);
        }
    }

    private GenerationResult Generate(string? prompt, IReadOnlyList<int> inputIds, GenerationOptions? options, Action<GeneratedToken>? onToken, CancellationToken cancel)
    {
        options ??= new GenerationOptions();
        options.Validate();
        var model = _llama ?? throw new BigModelException(BigModelErrorCode.ModelKindMismatch,
            $"'{Architecture.Family}' models compute embeddings; use Embed, not Generate.", Checkpoint.Path);
        CheckIds(inputIds, model.Vocab);
        int capacity = checked(inputIds.Count + Math.Max(options.MaxNewTokens, 1));
        CheckCacheBudget(model, capacity);
        var stopIds = new HashSet<int>(options.StopTokenIds ?? _settings.EosTokenIds);
        ulong seed = options.Seed ?? (ulong)Random.Shared.NextInt64();
        var sampler = new TokenSampler(options, seed);

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var clock = Stopwatch.StartNew();
            var sequence = new List<int>(inputIds);
            var generated = new List<int>();
            var latencies = new List<TimeSpan>();
            var scores = options.ReturnScores ? new List<float[]>() : null;
            var text = Tokenizer is null ? null : new IncrementalText(Tokenizer);
            var firstToken = TimeSpan.Zero;
            var stop = StopReason.MaxNewTokens;
            var last = TimeSpan.Zero;
            try
            {
                using var cache = new KvCache(model.Layers, capacity);
                Tensor? logits = null;
                float[]? lastRow = null;
                try
                {
                    for (int step = 0; step < options.MaxNewTokens; step++)
                    {
                        if (cancel.IsCancellationRequested) { stop = StopReason.Cancelled; break; }
                        logits?.Dispose();
                        UseTorchThreadsFor(decoding: step > 0);
                        logits = step == 0
                            ? Run(model, inputIds, 0, cache, allPositions: false, cancel)
                            : Run(model, [sequence[^1]], sequence.Count - 1, cache, allPositions: false, cancel);
                        var row = LastRow(logits, ref lastRow);
                        scores?.Add(row.ToArray());
                        int next = sampler.Next(row, sequence);
                        sequence.Add(next);
                        generated.Add(next);
                        var now = clock.Elapsed;
                        latencies.Add(now - last);
                        last = now;
                        if (step == 0) firstToken = now;
                        onToken?.Invoke(new GeneratedToken(step, next, text?.Append(next), latencies[^1]));
                        if (stopIds.Contains(next)) { stop = StopReason.EndOfSequence; break; }
                    }
                }
                finally
                {
                    logits?.Dispose();
                    UseTorchThreadsFor(decoding: false);
                }
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                stop = StopReason.Cancelled;
            }
            catch (ExternalException e)
            {
                throw TorchFailure(e);
            }
            var timings = new GenerationTimings(LoadReport.LoadTime, firstToken, clock.Elapsed, latencies);
            return new GenerationResult(prompt, inputIds.ToArray(), generated, Tokenizer?.Decode(generated), stop, seed, timings, scores);
        }
    }

    /// <summary>
    /// With the native kernel computing the linear layers, what a one-token step leaves to libtorch is element-wise
    /// work on a few thousand values and a short attention: too small to split, so libtorch runs it on one thread.
    /// Its parallel regions would otherwise wait at every barrier for a thread that competes for the same cores
    /// with the kernel's workers (and with everything else on a busy machine): on a loaded two-core machine that
    /// made the rest of a step about ten times slower than on one thread. Prompts go back to every thread.
    /// </summary>
    private void UseTorchThreadsFor(bool decoding)
    {
        int wanted = decoding && _kernel is not null ? 1 : Threads;
        if (get_num_threads() != wanted) set_num_threads(wanted);
    }

    /// <summary>
    /// Logits at every position of <paramref name="inputIds"/> (<c>[T][vocab]</c>, float32): what the model predicts
    /// after each prefix. One full forward pass, as a reference implementation computes it.
    /// </summary>
    public float[][] Logits(IReadOnlyList<int> inputIds, CancellationToken cancel = default)
    {
        var model = _llama ?? throw new BigModelException(BigModelErrorCode.ModelKindMismatch,
            $"'{Architecture.Family}' models compute embeddings, not logits.", Checkpoint.Path);
        CheckIds(inputIds, model.Vocab);
        CheckCacheBudget(model, inputIds.Count);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            try
            {
                using var cache = new KvCache(model.Layers, inputIds.Count);
                using var scope = NewDisposeScope();
                var logits = Run(model, inputIds, 0, cache, allPositions: true, cancel);
                var cpu = logits.to(CPU).contiguous();
                var flat = cpu.data<float>().ToArray();
                int vocab = (int)cpu.shape[2];
                return Enumerable.Range(0, inputIds.Count).Select(i => flat.AsSpan(i * vocab, vocab).ToArray()).ToArray();
            }
            catch (ExternalException e)
            {
                throw TorchFailure(e);
            }
        }
    }

    private Tensor Run(LlamaModel model, IReadOnlyList<int> ids, int start, KvCache cache, bool allPositions, CancellationToken cancel)
    {
        using var scope = NewDisposeScope();
        var input = tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Count], ScalarType.Int64);
        return model.Forward(input, start, cache, index => _pipeline.Acquire(index, cancel), allPositions, cancel).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The last position's logits, copied as one block into <paramref name="buffer"/> (allocated on first use and
    /// reused every step: a 32000-word vocabulary is 128 KB, which would land on the large-object heap each token).
    /// </summary>
    private static unsafe float[] LastRow(Tensor logits, ref float[]? buffer)
    {
        using var scope = NewDisposeScope();
        var row = logits[0, -1].to(CPU).to(ScalarType.Float32).contiguous();
        if (buffer is null || buffer.Length != row.numel()) buffer = new float[row.numel()];
        new ReadOnlySpan<float>((void*)TorchTypes.DataPointer(row), buffer.Length).CopyTo(buffer);
        return buffer;
    }

    private void CheckIds(IReadOnlyList<int> ids, int vocab)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Count == 0)
            throw new BigModelException(BigModelErrorCode.InvalidGenerationInput, "the input has no tokens; give at least one (for example the BOS id).", Checkpoint.Path);
        for (int i = 0; i < ids.Count; i++)
            if (ids[i] < 0 || ids[i] >= vocab)
                throw new BigModelException(BigModelErrorCode.InvalidGenerationInput, $"token id {ids[i]} at position {i} is outside the vocabulary (0..{vocab - 1}).", Checkpoint.Path);
    }

    private void CheckCacheBudget(LlamaModel model, int capacity)
    {
        if (_options.AvailableHostBytes is not long available || _plan.Execution.Kind == WeightLocationKind.Cuda) return;
        long cache = KvCache.Bytes(model.Layers, model.KvHeads, model.HeadDim, capacity, TorchTypes.ElementSize(_computeType));
        long free = available - _plan.HostResidentBytes - _plan.WindowBytes;
        if (cache > free)
            throw new BigModelException(BigModelErrorCode.MemoryBudgetExceeded,
                $"a key/value cache for {capacity} positions needs {IO.ByteSize.Format(cache)} but only {IO.ByteSize.Format(Math.Max(0, free))} of the available host memory is left after the weights; ask for fewer new tokens.",
                Checkpoint.Path);
    }

    private TextTokenizer RequireTokenizer() => Tokenizer ?? throw new BigModelException(BigModelErrorCode.TokenizerMissing,
        "the model folder has no tokenizer.json; pass token ids instead of text, or name a tokenizer file.", Checkpoint.Directory);

    /// <summary>Decodes a growing list of ids and hands out only the text each new id adds.</summary>
    private sealed class IncrementalText(TextTokenizer tokenizer)
    {
        private readonly List<int> _ids = new();
        private string _emitted = "";

        public string Append(int id)
        {
            _ids.Add(id);
            var text = tokenizer.Decode(_ids);
            // An incomplete multi-byte character decodes as U+FFFD; wait for the rest of it.
            if (text.EndsWith('\uFFFD')) return "";
            int common = 0;
            while (common < text.Length && common < _emitted.Length && text[common] == _emitted[common]) common++;
            var delta = text[common..];
            _emitted = text;
            return delta;
        }
    }

    // ---------------------------------------------------------------- embeddings

    /// <summary>One vector per text: tokenized, truncated to the model's limit, encoded in padded batches, pooled.</summary>
    public EmbeddingResult Embed(IReadOnlyList<string> texts, EmbeddingOptions? options = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var tokenizer = RequireTokenizer();
        var ids = texts.Select(t => (IReadOnlyList<int>)tokenizer.Encode(t ?? throw new ArgumentNullException(nameof(texts), "a text is null."))).ToList();
        return Embed(texts, ids, options, cancel);
    }

    /// <summary>One vector per token-id sequence (special tokens included as given).</summary>
    public EmbeddingResult Embed(IReadOnlyList<IReadOnlyList<int>> tokenIds, EmbeddingOptions? options = null, CancellationToken cancel = default) =>
        Embed(null, tokenIds, options, cancel);

    private EmbeddingResult Embed(IReadOnlyList<string>? texts, IReadOnlyList<IReadOnlyList<int>> tokenIds, EmbeddingOptions? options, CancellationToken cancel)
    {
        options ??= new EmbeddingOptions();
        options.Validate();
        var model = _bert ?? throw new BigModelException(BigModelErrorCode.ModelKindMismatch,
            $"'{Architecture.Family}' models generate text; use Generate, not Embed.", Checkpoint.Path);
        int limit = Math.Min(options.MaxTokens ?? _settings.MaxSequenceLength ?? model.MaxPositions, model.MaxPositions);
        var inputs = tokenIds.Select(ids => Truncate(ids, limit)).ToList();
        foreach (var ids in inputs) CheckIds(ids, model.Vocab);
        bool normalize = options.Normalize ?? _settings.Normalize;
        var pooling = options.Pooling ?? _settings.Pooling;
        int pad = Checkpoint.Config?.PadTokenId is int p && p >= 0 && p < model.Vocab ? p : 0;

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var clock = Stopwatch.StartNew();
            var vectors = new List<float[]>(inputs.Count);
            try
            {
                for (int start = 0; start < inputs.Count; start += options.BatchSize)
                {
                    cancel.ThrowIfCancellationRequested();
                    var batch = inputs.Skip(start).Take(options.BatchSize).ToList();
                    int width = batch.Max(b => b.Count);
                    var ids = new long[batch.Count * width];
                    var mask = new long[batch.Count * width];
                    for (int r = 0; r < batch.Count; r++)
                        for (int c = 0; c < width; c++)
                        {
                            bool real = c < batch[r].Count;
                            ids[r * width + c] = real ? batch[r][c] : pad;
                            mask[r * width + c] = real ? 1 : 0;
                        }
                    using var scope = NewDisposeScope();
                    var idTensor = tensor(ids, [batch.Count, width], ScalarType.Int64);
                    var maskTensor = tensor(mask, [batch.Count, width], ScalarType.Int64);
                    var hidden = model.Encode(idTensor, maskTensor, index => _pipeline.Acquire(index, cancel), cancel);
                    var pooled = BertModel.Pool(hidden, maskTensor, pooling, normalize).to(ScalarType.Float32).to(CPU).contiguous();
                    var flat = pooled.data<float>().ToArray();
                    int dims = (int)pooled.shape[1];
                    for (int r = 0; r < batch.Count; r++) vectors.Add(flat.AsSpan(r * dims, dims).ToArray());
                }
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                throw new BigModelException(BigModelErrorCode.Cancelled, $"cancelled after {vectors.Count} of {inputs.Count} inputs.", Checkpoint.Path);
            }
            catch (ExternalException e)
            {
                throw TorchFailure(e);
            }
            return new EmbeddingResult(texts, vectors, inputs.Select(i => i.Count).ToList(), normalize, pooling, clock.Elapsed);
        }
    }

    /// <summary>Keeps the first limit − 1 tokens and the last one, so a closing [SEP] survives truncation.</summary>
    private static IReadOnlyList<int> Truncate(IReadOnlyList<int> ids, int limit) =>
        ids.Count <= limit ? ids : ids.Take(limit - 1).Append(ids[^1]).ToList();

    // ---------------------------------------------------------------- teardown

    private static BigModelException TorchFailure(ExternalException e) =>
        new(BigModelErrorCode.InferenceFailed, $"libtorch failed: {e.Message.Split('\n', 2)[0].Trim()}", inner: e);

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _pipeline.Dispose();
            _reader.Dispose();
            _kernel?.Dispose();
            _llama?.ReleaseCaches();
            Tokenizer?.Dispose();
            NativeHeap.Trim();
        }
    }
}
