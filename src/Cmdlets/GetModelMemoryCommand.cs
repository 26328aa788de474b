using System.Management.Automation;
using BigModel.Checkpoints;
using BigModel.Cmdlets.Infrastructure;
using BigModel.Errors;
using BigModel.IO;
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
    private const string LiteralPathSet = "LiteralPath";
    private const string CheckpointSet = "Checkpoint";

    /// <summary>A checkpoint (file, index or folder) or a bare config.json.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    public string[] Path { get; set; } = [];

    /// <summary>Like -Path, but taken as written: '[', ']', '*' and '?' are part of the name.</summary>
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
    // Items piped from Get-ChildItem bind here by PSPath (or FullName), so names holding [ ] * ? are taken as written.
    [Alias("PSPath", "LP", "FullName")]
    [ValidateNotNullOrEmpty]
    public string[] LiteralPath { get; set; } = [];

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

    /// <summary>A memory budget such as '8GiB': an error (BigModel.MemoryBudgetExceeded) is written for every precision whose inference memory exceeds it, after its row.</summary>
    [Parameter]
    public string? MaxBytes { get; set; }

    protected override void ProcessRecord()
    {
        var options = new MemoryEstimateOptions
        {
            DTypes = DType?.Select(MemoryDType.Parse).ToList() ?? [],
            ContextLength = ContextLength,
            BatchSize = BatchSize,
        };
        long? budget;
        try
        {
            budget = MaxBytes is null ? null : ByteSize.Parse(MaxBytes, "MaxBytes");
        }
        catch (BigModelException e)
        {
            ThrowBigModelError(e);
            return;
        }
        if (Checkpoint is not null)
        {
            var checkpoint = Checkpoint;
            Emit(() => ModelMemoryEstimator.Estimate(checkpoint, options), checkpoint, budget);
            return;
        }
        bool literal = ParameterSetName == LiteralPathSet;
        foreach (var input in literal ? LiteralPath : Path)
        {
            try
            {
                foreach (var path in ResolveInput(input, literal))
                    Emit(() => ModelMemoryEstimator.Estimate(path, options), path, budget);
            }
            catch (BigModelException e)
            {
                WriteBigModelError(e, input);
            }
        }
    }

    private void Emit(Func<IReadOnlyList<ModelMemory>> estimate, object target, long? budget)
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
        foreach (var row in rows)
        {
            WriteObject(row);
            if (budget is not long limit) continue;
            try
            {
                row.ThrowIfOver(limit, MaxBytes);
            }
            catch (BigModelException e)
            {
                WriteBigModelError(e, row);
            }
        }
    }
}
