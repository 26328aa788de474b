using System.Management.Automation;
using BigModel.Checkpoints;
using BigModel.Cmdlets.Infrastructure;
using BigModel.Errors;
using BigModel.Memory;

namespace BigModel.Cmdlets;

/// <summary>Estimates the memory a model needs to load, run and train, per precision.</summary>
/// <remarks>
/// <para>Works on a checkpoint or on a bare config.json, so a model can be sized before it is downloaded (llama, mistral, qwen2, bert and gpt2 families). Parameter counts from a config equal those of the real checkpoint.</para>
/// <para>Total, LargestLayer and TrainingAdam mean what accelerate estimate-memory means: float tensors take the precision's width (integer tensors keep theirs); the largest layer is the largest block that must stay on one device (a no-split block such as a decoder layer or BERT's embeddings, or a leaf module); Adam training is 4 times the float32 weights for float32, 2 times for float16/bfloat16 mixed precision, and N/A for int8/int4.</para>
/// <para>Inference adds what Accelerate leaves out. KvCache: 2 (keys and values) x layers x batch x context x KV heads x head dimension x element size, for decoders. ActivationBytes: one layer's forward pass over the whole context (layers run one at a time): the residual stream and its normalised copy (2 x hidden), the query/key/value projections ((heads + 2 x KV heads) x head dimension), the MLP's intermediates (3 x intermediate size), the attention scores (heads x context x context, as eager attention materialises them), and float32 logits for the last position. Quantised (int8/int4) weights are assumed to compute and cache in float16. Inference = Total + KvCache + ActivationBytes.</para>
/// </remarks>
/// <example>
/// <code>Get-ModelMemory ./Meta-Llama-3-8B/config.json -DType bfloat16 -ContextLength 8192</code>
/// <para>Sizes a model from its config alone, for an 8K context.</para>
/// </example>
/// <example>
/// <code>Get-Checkpoint ./bert-base-cased | Get-ModelMemory</code>
/// <para>The accelerate estimate-memory table (float32, float16, int8, int4) of a checkpoint, plus KV cache and inference columns.</para>
/// </example>
/// <example>
/// <code>(Get-ModelMemory ./model -DType float16 -BatchSize 8).InferenceBytes / 1GB</code>
/// <para>The exact byte counts stay available as properties.</para>
/// </example>
/// <returns>BigModel.Memory.ModelMemory, one per precision.</returns>
[Cmdlet(VerbsCommon.Get, "ModelMemory", DefaultParameterSetName = PathSet)]
[OutputType(typeof(ModelMemory))]
public sealed class GetModelMemoryCommand : BigModelCmdlet
{
    private const string PathSet = "Path";
    private const string CheckpointSet = "Checkpoint";

    /// <summary>A checkpoint (file, index or folder) or a bare config.json.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath")]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    public string[] Path { get; set; } = [];

    /// <summary>A checkpoint from Get-Checkpoint.</summary>
    [Parameter(Mandatory = true, ParameterSetName = CheckpointSet, ValueFromPipeline = true)]
    public Checkpoint? Checkpoint { get; set; }

    /// <summary>Precisions to size for (default: float32, float16, int8, int4).</summary>
    [Parameter]
    [ValidateSet("float32", "float16", "bfloat16", "int8", "int4", IgnoreCase = true)]
    public string[]? DType { get; set; }

    /// <summary>Tokens of context per sequence for the KV cache and activations (default: the model's maximum).</summary>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int? ContextLength { get; set; }

    /// <summary>Sequences run together.</summary>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int BatchSize { get; set; } = 1;

    protected override void ProcessRecord()
    {
        var options = new MemoryEstimateOptions
        {
            DTypes = DType?.Select(MemoryDType.Parse).ToList() ?? [],
            ContextLength = ContextLength,
            BatchSize = BatchSize,
        };
        if (Checkpoint is not null)
        {
            Emit(() => ModelMemoryEstimator.Estimate(Checkpoint, options), Checkpoint);
            return;
        }
        foreach (var input in Path)
        {
            try
            {
                foreach (var path in ResolvePaths(input))
                    Emit(() => ModelMemoryEstimator.Estimate(path, options), path);
            }
            catch (BigModelException e)
            {
                WriteBigModelError(e, input);
            }
        }
    }

    private void Emit(Func<IReadOnlyList<ModelMemory>> estimate, object target)
    {
        IReadOnlyList<ModelMemory> rows;
        try
        {
            rows = estimate();
        }
        catch (BigModelException e)
        {
            WriteBigModelError(e, target);
            return;
        }
        foreach (var note in rows.SelectMany(r => r.Notes).Distinct()) WriteWarning(note);
        WriteObject(rows, enumerateCollection: true);
    }
}
