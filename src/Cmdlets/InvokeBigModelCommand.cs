using System.Collections;
using System.Management.Automation;
using BigModel.Checkpoints;
using BigModel.Cmdlets.Infrastructure;
using BigModel.DeviceMaps;
using BigModel.Errors;
using BigModel.Inference;
using BigModel.IO;

namespace BigModel.Cmdlets;

/// <summary>Runs a model bigger than memory: generates text or computes embeddings, with blocks offloaded to CPU memory or disk as a device map says.</summary>
/// <remarks>
/// <para>Loads Llama-family models (Llama, Mistral, Qwen2) for text generation and BERT models for sentence embeddings on TorchSharp. Blocks placed on the execution device are loaded once; cpu blocks stay in host memory; disk blocks are read straight from the memory-mapped safetensors files while memory can cache them, and streamed into a small staging ring past the page cache (O_DIRECT) when it cannot (-DiskAccess chooses; PyTorch .bin checkpoints are first converted to a safetensors offload folder). While one block computes, the next ones are brought in on a background thread (prefetch); -NoPrefetch loads each block only when it is needed, as Accelerate does, so the difference can be measured.</para>
/// <para>-DeviceMap takes a map from New-DeviceMap, an Accelerate/transformers device-map JSON file, or a strategy (auto, sequential, balanced, balanced_low_0) planned with -MaxMemory. Without either, the machine is measured: free GPU memory, and the RAM this process can actually get (container limits included) minus what the run needs for its KV cache and activations, so a model bigger than memory offloads on its own. A map that puts more on the CPU than is available is refused before loading, with the numbers.</para>
/// <para>Generation: greedy by default; -Temperature, -TopK, -TopP and -RepetitionPenalty sample as transformers does, -Seed makes sampling repeatable. It stops at the model's end-of-sequence token or after -MaxNewTokens. Input is text (-Prompt, through the model's tokenizer.json) or token ids (-InputIds, for models without a tokenizer). -Stream writes tokens to the console as they are produced; the result object (text, ids, timings) follows. Ctrl+C stops between tokens.</para>
/// <para>Embeddings: -Text returns one vector per input text (mean pooling over the real tokens, normalised as the model folder says).</para>
/// </remarks>
/// <example>
/// <code>Invoke-BigModel ./stories260K -InputIds 1 -MaxNewTokens 40</code>
/// <para>Greedy generation from token ids on a model without a tokenizer.</para>
/// </example>
/// <example>
/// <code>New-DeviceMap ./Llama-2-7b-hf -MaxMemory @{ cpu = '6GiB' } | Invoke-BigModel -Prompt 'The capital of France is' -Stream</code>
/// <para>Plans a map that keeps 6 GiB in RAM and streams the rest from disk, then generates, printing tokens as they come.</para>
/// </example>
/// <example>
/// <code>$e = Invoke-BigModel ./all-MiniLM-L6-v2 -Text 'A man is eating food.', 'A man eats a meal.', 'The sky is blue.'; $e[0].Similarity($e[1])</code>
/// <para>Sentence embeddings and the cosine similarity of two of them.</para>
/// </example>
/// <returns>BigModel.Inference.GenerationResult per prompt, or BigModel.Inference.TextEmbedding per text.</returns>
[Cmdlet(VerbsLifecycle.Invoke, "BigModel", DefaultParameterSetName = PromptSet)]
[OutputType(typeof(GenerationResult), ParameterSetName = [PromptSet, IdsSet])]
[OutputType(typeof(TextEmbedding), ParameterSetName = [TextSet])]
public sealed class InvokeBigModelCommand : BigModelCmdlet
{
    private const string PromptSet = "Prompt";
    private const string IdsSet = "InputIds";
    private const string TextSet = "Text";
    private readonly CancellationTokenSource _stop = new();

    /// <summary>The checkpoint to run: a weight file, an index file or a model folder. Wildcards must match one path.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("Source")]
    [SupportsWildcards]
    public string? Path { get; set; }

    /// <summary>The checkpoint's path taken literally: '[', ']', '*' and '?' are part of the name.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("PSPath", "LP", "FullName")]
    public string? LiteralPath { get; set; }

    /// <summary>A checkpoint from Get-Checkpoint, or a device map from New-DeviceMap (whose checkpoint is then run).</summary>
    [Parameter(ValueFromPipeline = true)]
    public PSObject? InputObject { get; set; }

    /// <summary>Where blocks live: a map from New-DeviceMap, an Accelerate device-map JSON file, or auto, sequential, balanced or balanced_low_0.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(StrategyCompleter))]
    public object? DeviceMap { get; set; }

    /// <summary>Memory per device for planning, as New-DeviceMap takes it: @{ 0 = '10GiB'; cpu = '30GiB' }. Omitted: this machine's free memory.</summary>
    [Parameter]
    public Hashtable? MaxMemory { get; set; }

    /// <summary>Texts to continue (one generation each).</summary>
    [Parameter(Mandatory = true, ParameterSetName = PromptSet)]
    [ValidateNotNullOrEmpty]
    public string[] Prompt { get; set; } = [];

    /// <summary>Token ids to continue (for models without a tokenizer).</summary>
    [Parameter(Mandatory = true, ParameterSetName = IdsSet)]
    [ValidateNotNullOrEmpty]
    public int[] InputIds { get; set; } = [];

    /// <summary>Texts to embed (BERT models).</summary>
    [Parameter(Mandatory = true, ParameterSetName = TextSet)]
    [ValidateNotNullOrEmpty]
    public string[] Text { get; set; } = [];

    /// <summary>Most tokens to generate.</summary>
    [Parameter(ParameterSetName = PromptSet)]
    [Parameter(ParameterSetName = IdsSet)]
    [ValidateRange(0, 1_000_000)]
    public int MaxNewTokens { get; set; } = 32;

    /// <summary>0 for greedy decoding; above 0 samples with the logits divided by it.</summary>
    [Parameter(ParameterSetName = PromptSet)]
    [Parameter(ParameterSetName = IdsSet)]
    public double Temperature { get; set; }

    /// <summary>Sample only among the k most likely tokens (0: all).</summary>
    [Parameter(ParameterSetName = PromptSet)]
    [Parameter(ParameterSetName = IdsSet)]
    public int TopK { get; set; }

    /// <summary>Sample only among the most likely tokens whose probability reaches p (1: all).</summary>
    [Parameter(ParameterSetName = PromptSet)]
    [Parameter(ParameterSetName = IdsSet)]
    public double TopP { get; set; } = 1.0;

    /// <summary>Above 1 discourages tokens already in the sequence, as transformers' repetition_penalty.</summary>
    [Parameter(ParameterSetName = PromptSet)]
    [Parameter(ParameterSetName = IdsSet)]
    public double RepetitionPenalty { get; set; } = 1.0;

    /// <summary>Seed for sampling, to repeat a run exactly.</summary>
    [Parameter(ParameterSetName = PromptSet)]
    [Parameter(ParameterSetName = IdsSet)]
    public ulong? Seed { get; set; }

    /// <summary>Write tokens to the console as they are produced.</summary>
    [Parameter(ParameterSetName = PromptSet)]
    [Parameter(ParameterSetName = IdsSet)]
    public SwitchParameter Stream { get; set; }

    /// <summary>Compute in this dtype (weights converted on load).</summary>
    [Parameter]
    [ValidateSet("float32", "float16", "bfloat16", IgnoreCase = true)]
    public string? DType { get; set; }

    /// <summary>Bring each offloaded block in only when it is needed (Accelerate's way), instead of prefetching ahead.</summary>
    [Parameter]
    public SwitchParameter NoPrefetch { get; set; }

    /// <summary>Offloaded blocks prepared ahead of the one computing; a measured budget keeps room for them.</summary>
    [Parameter]
    [ValidateRange(1, InferenceOptions.MaxPrefetchDepth)]
    public int PrefetchDepth { get; set; } = InferenceOptions.DefaultPrefetchDepth;

    /// <summary>Where offloaded blocks compute: cpu or cuda:N (default: the first GPU of the map, else cpu).</summary>
    [Parameter]
    [ArgumentCompleter(typeof(DeviceCompleter))]
    public string? Device { get; set; }

    /// <summary>Threads torch and the native linear kernel compute with (default: the cores this process may use).</summary>
    [Parameter]
    [ValidateRange(1, 4096)]
    public int? Threads { get; set; }

    /// <summary>
    /// What computes the linear layers on the CPU: Auto (the native decode kernel for one-token steps where the
    /// processor has AVX2 and FMA, libtorch otherwise), LibTorch (always libtorch, for comparison) or Native (as
    /// Auto, but an error where the kernel cannot run).
    /// </summary>
    [Parameter]
    public LinearKernel LinearKernel { get; set; } = LinearKernel.Auto;

    /// <summary>
    /// How disk-placed weights reach the computation: Auto (mapped while memory can cache them, read past the page
    /// cache when it cannot), Mapped (computed from the memory-mapped files), Copied (read into a staging ring) or
    /// Direct (read into the staging ring past the page cache, O_DIRECT).
    /// </summary>
    [Parameter]
    public DiskAccess DiskAccess { get; set; } = DiskAccess.Auto;

    protected override void ProcessRecord()
    {
        try
        {
            var (checkpoint, map) = Source();
            var dtype = DType is null ? (DType?)null : DTypes.Parse(DType);
            int context = ParameterSetName switch
            {
                IdsSet => InputIds.Length + MaxNewTokens,
                PromptSet => Prompt.Max(p => p.Length) + MaxNewTokens,
                _ => checkpoint.Config?.MaxPositionEmbeddings ?? 512,
            };
            var options = new InferenceOptions
            {
                DType = dtype,
                ExecutionDevice = Device,
                Prefetch = !NoPrefetch,
                PrefetchDepth = PrefetchDepth,
                Threads = Threads,
                LinearKernel = LinearKernel,
                DiskAccess = DiskAccess,
            };
            var deviceMap = InferencePlacement.Resolve(checkpoint, map, DeviceMap as string,
                MaxMemory is null ? null : DeviceMaps.MaxMemory.FromDictionary(MaxMemory), dtype, context, options.BlocksAhead);
            foreach (var line in deviceMap.Log) WriteVerbose(line);
            WriteVerbose($"Placement: {deviceMap}");
            RuntimeLocator.Ensure(this);
            options = options with { AvailableHostBytes = InferencePlacement.AvailableHostBytes() };
            var progress = new ProgressWriter(this, 2, $"Loading {checkpoint.Path}");
            InferenceSession session;
            try
            {
                session = InferenceSession.Open(checkpoint, deviceMap.ToPlacement(), options,
                    new SyncProgress<InferenceLoadProgress>(p => progress.Report(p.BytesDone, p.BytesTotal, $"{p.Stage} {p.Block}")), _stop.Token);
            }
            finally
            {
                progress.Complete();
            }
            using (session)
            {
                var report = session.LoadReport;
                WriteVerbose($"Loaded in {report.LoadTime.TotalSeconds:0.00} s on {report.ExecutionDevice}: {ByteSize.Format(report.HostResidentBytes)} in RAM, "
                    + $"{ByteSize.Format(report.DeviceResidentBytes)} on the device, {ByteSize.Format(report.MappedBytes)} mapped from disk, {ByteSize.Format(report.StreamedBytes)} streamed ({report.DiskAccess}), {session.Threads} threads, linear layers by {session.LinearKernel}.");
                if (ParameterSetName == TextSet) Embed(session);
                else Generate(session);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            throw new PipelineStoppedException();
        }
        catch (BigModelException e)
        {
            WriteBigModelError(e, Path ?? InputObject?.BaseObject);
        }
    }

    private (Checkpoint Checkpoint, DeviceMap? Map) Source()
    {
        var piped = InputObject?.BaseObject;
        if (piped is Checkpoint c) return (c, null);
        var map = piped as DeviceMap ?? DeviceMap as DeviceMap ?? (DeviceMap as PSObject)?.BaseObject as DeviceMap;
        if (LiteralPath is not null) return (Checkpoint.Open(SingleInput(LiteralPath, literal: true)), map);
        var path = Path ?? map?.Source
            ?? throw new BigModelException(BigModelErrorCode.InvalidArgument, "give the checkpoint with -Path or -LiteralPath, or pipe a checkpoint or a device map from New-DeviceMap.");
        return (Checkpoint.Open(SingleInput(path, literal: map?.Source == path)), map);
    }

    private void Generate(InferenceSession session)
    {
        var options = new GenerationOptions
        {
            MaxNewTokens = MaxNewTokens,
            Temperature = Temperature,
            TopK = TopK,
            TopP = TopP,
            RepetitionPenalty = RepetitionPenalty,
            Seed = Seed,
        };
        Action<GeneratedToken>? stream = Stream ? t => Host.UI.Write(t.Text ?? $"[{t.Id}] ") : null;
        IEnumerable<GenerationResult> results = ParameterSetName == IdsSet
            ? [session.Generate(InputIds, options, stream, _stop.Token)]
            : Prompt.Select(p =>
            {
                if (Stream) Host.UI.Write(p);
                return session.Generate(p, options, stream, _stop.Token);
            });
        foreach (var result in results)
        {
            if (Stream) Host.UI.WriteLine();
            WriteVerbose($"{result.GeneratedIds.Count} tokens ({result.StopReason}): first after {result.Timings.FirstToken.TotalMilliseconds:0} ms, "
                + $"then {result.Timings.MeanDecodeLatency.TotalMilliseconds:0.0} ms per token ({result.Timings.DecodeTokensPerSecond:0.0} tokens/s).");
            if (result.StopReason == StopReason.Cancelled) throw new PipelineStoppedException();
            WriteObject(result);
        }
    }

    private void Embed(InferenceSession session)
    {
        var result = session.Embed(Text, cancel: _stop.Token);
        WriteVerbose($"{Text.Length} texts embedded in {result.Elapsed.TotalMilliseconds:0} ms ({result.Dimensions} dimensions).");
        WriteObject(result.Items(), enumerateCollection: true);
    }

    protected override void StopProcessing() => _stop.Cancel();

    protected override void EndProcessing() => _stop.Dispose();
}
