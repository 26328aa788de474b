using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Errors;

namespace BigModel.Memory;

/// <summary>Options for <see cref="ModelMemoryEstimator"/>.</summary>
public sealed record MemoryEstimateOptions
{
    /// <summary>Precisions to size for; accelerate estimate-memory's defaults when empty.</summary>
    public IReadOnlyList<MemoryDType> DTypes { get; init; } = [];

    /// <summary>Tokens of context per sequence; the model's max_position_embeddings when null.</summary>
    public int? ContextLength { get; init; }

    /// <summary>Sequences processed together.</summary>
    public int BatchSize { get; init; } = 1;
}

/// <summary>
/// Sizes a model from its checkpoint or from config.json alone.
/// <para>
/// Weights, largest layer and Adam training follow accelerate estimate-memory: float tensors take the target
/// precision's width (integer tensors keep theirs); training is 4× the float32 weights for float32 and 2× for
/// float16/bfloat16 (mixed precision), and not estimated for int8/int4.
/// </para>
/// <para>
/// Inference adds, for decoders, the KV cache: 2 (keys, values) × layers × batch × context × kv heads × head dim
/// × element size; and for every model an activation allowance for one layer's forward pass over the whole context
/// (layers run one at a time): the residual stream and its normalised copy (2 × hidden), the query/key/value
/// projections ((heads + 2 × kv heads) × head dim), the MLP's intermediate tensors (3 × intermediate), the attention
/// scores (heads × context × context, as eager attention materialises them), and float32 logits for the last
/// position (vocab). Quantised (int8/int4) weights compute and cache in float16.
/// </para>
/// </summary>
public static class ModelMemoryEstimator
{
    public static IReadOnlyList<ModelMemory> Estimate(Checkpoint checkpoint, MemoryEstimateOptions? options = null) =>
        Estimate(checkpoint.Path, checkpoint.Tensors.Select(SizedTensor.From).ToList(), checkpoint.Config, checkpoint.Architecture, options,
            checkpoint.Config is null ? ["no config.json beside the checkpoint: KV cache and activations are not counted."] : []);

    /// <summary>Sizes the model a config.json describes, before any weights are downloaded.</summary>
    public static IReadOnlyList<ModelMemory> Estimate(ModelConfig config, MemoryEstimateOptions? options = null)
    {
        var spec = ArchitectureCatalog.Require(config);
        var tensors = spec.SizedTensorsFromConfig(config).Select(SizedTensor.From).ToList();
        return Estimate(config.Path ?? "config.json", tensors, config, spec, options, []);
    }

    /// <summary>Opens <paramref name="path"/> as a checkpoint, or as a bare config.json when it is one.</summary>
    public static IReadOnlyList<ModelMemory> Estimate(string path, MemoryEstimateOptions? options = null)
    {
        var full = Path.GetFullPath(path);
        return ModelConfig.IsConfigFile(full) ? Estimate(ModelConfig.Load(full), options) : Estimate(Checkpoint.Open(full), options);
    }

    private static IReadOnlyList<ModelMemory> Estimate(string model, IReadOnlyList<SizedTensor> tensors, ModelConfig? config,
        ArchitectureSpec? spec, MemoryEstimateOptions? options, IReadOnlyList<string> notes)
    {
        try
        {
            return EstimateChecked(model, tensors, config, spec, options, notes);
        }
        catch (OverflowException e)
        {
            throw new BigModelException(BigModelErrorCode.InvalidArgument,
                "the sizes involved do not fit in 64 bits; check the context length, batch size and the config's dimensions.", config?.Path ?? model, inner: e);
        }
    }

    private static IReadOnlyList<ModelMemory> EstimateChecked(string model, IReadOnlyList<SizedTensor> tensors, ModelConfig? config,
        ArchitectureSpec? spec, MemoryEstimateOptions? options, IReadOnlyList<string> notes)
    {
        options ??= new MemoryEstimateOptions();
        if (options.BatchSize < 1)
            throw new BigModelException(BigModelErrorCode.InvalidArgument, $"BatchSize must be at least 1, not {options.BatchSize}.");
        if (options.ContextLength is < 1)
            throw new BigModelException(BigModelErrorCode.InvalidArgument, $"ContextLength must be at least 1, not {options.ContextLength}.");
        var dtypes = options.DTypes.Count > 0 ? options.DTypes : MemoryDType.Defaults;
        long parameters = tensors.Sum(t => t.ElementCount);
        long float32Bytes = tensors.Sum(t => t.BytesAs(MemoryDType.Float32));
        var shape = config is null ? null : RuntimeShape.From(config, spec);
        int context = options.ContextLength ?? shape?.MaxPositions ?? 0;
        var allNotes = notes.ToList();
        if (config is not null && shape is null)
            allNotes.Add("config.json lacks the dimensions needed for KV cache and activations; they are not counted.");

        var rows = new List<ModelMemory>(dtypes.Count);
        foreach (var dtype in dtypes)
        {
            var (layerName, layerBytes) = LargestLayer.Find(tensors.Select(t => (t.Name, t.BytesAs(dtype))).ToList(), spec);
            long kv = 0, activations = 0;
            if (shape is not null && context > 0)
            {
                kv = shape.KvCacheBytes(options.BatchSize, context, dtype.ComputeBytes);
                activations = shape.ActivationBytes(options.BatchSize, context, dtype.ComputeBytes);
            }
            rows.Add(new ModelMemory
            {
                Model = model,
                DType = dtype,
                ParameterCount = parameters,
                TotalBytes = tensors.Sum(t => t.BytesAs(dtype)),
                LargestLayer = layerName,
                LargestLayerBytes = layerBytes,
                TrainingAdamBytes = dtype.Bits switch
                {
                    32 => checked(4 * float32Bytes),
                    16 => checked(2 * float32Bytes),
                    _ => null,
                },
                KvCacheBytes = kv,
                ActivationBytes = activations,
                ContextLength = context,
                BatchSize = options.BatchSize,
                Notes = allNotes,
            });
        }
        return rows;
    }
}
