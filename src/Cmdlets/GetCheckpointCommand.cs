using System.Management.Automation;
using BigModel.Checkpoints;
using BigModel.Cmdlets.Infrastructure;
using BigModel.Errors;

namespace BigModel.Cmdlets;

/// <summary>
/// <para type="synopsis">Describes a model checkpoint without loading its weights.</para>
/// </summary>
[Cmdlet(VerbsCommon.Get, "Checkpoint", DefaultParameterSetName = CheckpointSet)]
[OutputType(typeof(Checkpoint), ParameterSetName = [CheckpointSet])]
[OutputType(typeof(TensorInfo), ParameterSetName = [TensorSet])]
public sealed class GetCheckpointCommand : BigModelCmdlet
{
    private const string CheckpointSet = "Checkpoint";
    private const string TensorSet = "Tensor";

    /// <summary>A weight file, an index file or a model folder. Wildcards are allowed.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath")]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = [];

    /// <summary>Emit the tensors instead of the checkpoint.</summary>
    [Parameter(Mandatory = true, ParameterSetName = TensorSet)]
    public SwitchParameter Tensor { get; set; }

    /// <summary>Only tensors whose names match these wildcard patterns.</summary>
    [Parameter(ParameterSetName = TensorSet)]
    [ArgumentCompleter(typeof(TensorNameCompleter))]
    public string[]? Name { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var input in Path)
        {
            try
            {
                foreach (var path in ResolvePaths(input))
                {
                    var checkpoint = Checkpoint.Open(path);
                    foreach (var warning in checkpoint.Warnings)
                        WriteWarning($"{checkpoint.Path}: {(warning.Tensor is null ? "" : $"tensor '{warning.Tensor}': ")}{warning.Message}");
                    if (!Tensor)
                    {
                        WriteObject(checkpoint);
                        continue;
                    }
                    var patterns = Name?.Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase)).ToList();
                    foreach (var tensor in checkpoint.Tensors)
                        if (patterns is null || patterns.Any(p => p.IsMatch(tensor.Name)))
                            WriteObject(tensor);
                }
            }
            catch (BigModelException e)
            {
                WriteBigModelError(e, input);
            }
        }
    }
}
