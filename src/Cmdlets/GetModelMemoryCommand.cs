using System.Management.Automation;
using BigModel.Checkpoints;
using BigModel.Cmdlets.Infrastructure;
using BigModel.Errors;
using BigModel.Memory;

namespace BigModel.Cmdlets;

/// <summary>
/// <para type="synopsis">Estimates the memory a model needs to load, run and train, per precision.</para>
/// </summary>
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
