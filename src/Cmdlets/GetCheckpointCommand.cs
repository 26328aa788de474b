using System.Management.Automation;
using BigModel.Checkpoints;
using BigModel.Cmdlets.Infrastructure;
using BigModel.Errors;

namespace BigModel.Cmdlets;

/// <summary>Describes a model checkpoint without loading its weights.</summary>
/// <remarks>
/// <para>Reads only the headers of a checkpoint: a single *.safetensors file, a sharded folder with a *.safetensors.index.json, a PyTorch pytorch_model.bin (read with an allowlist unpickler that never executes code), or a model folder resolved the way transformers does (model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json). config.json beside the weights is read too.</para>
/// <para>The checkpoint object lists its files, format, architecture, parameter count, size and dtypes; its Tensors property holds every tensor (name, dtype, shape, bytes, file) in the model's forward order. Pipe it to Get-ModelMemory, Test-Checkpoint, Split-Checkpoint or New-DeviceMap.</para>
/// <para>Every header is validated as the safetensors reference implementation does, and index entries that would leave the checkpoint folder are refused.</para>
/// </remarks>
/// <example>
/// <code>Get-Checkpoint ./all-MiniLM-L6-v2</code>
/// <para>Describes the checkpoint in a model folder.</para>
/// </example>
/// <example>
/// <code>Get-Checkpoint ./Llama-2-7b-hf -Tensor -Name 'model.layers.0.*' | Sort-Object ByteLength -Descending</code>
/// <para>Lists the tensors of the first decoder layer, largest first.</para>
/// </example>
/// <example>
/// <code>Get-ChildItem ~/models -Directory | Get-Checkpoint -ErrorAction SilentlyContinue | Format-Table Path, Format, ParameterCount</code>
/// <para>Surveys every model folder; folders that are not checkpoints are skipped.</para>
/// </example>
/// <returns>BigModel.Checkpoints.Checkpoint, or BigModel.Checkpoints.TensorInfo with -Tensor.</returns>
[Cmdlet(VerbsCommon.Get, "Checkpoint", DefaultParameterSetName = PathSet)]
[OutputType(typeof(Checkpoint), ParameterSetName = [PathSet, LiteralPathSet])]
[OutputType(typeof(TensorInfo), ParameterSetName = [PathTensorSet, LiteralPathTensorSet])]
public sealed class GetCheckpointCommand : BigModelCmdlet
{
    private const string PathSet = "Path";
    private const string LiteralPathSet = "LiteralPath";
    private const string PathTensorSet = "PathTensor";
    private const string LiteralPathTensorSet = "LiteralPathTensor";

    /// <summary>A weight file, an index file or a model folder. Wildcards are allowed.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathTensorSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    public string[] Path { get; set; } = [];

    /// <summary>Like -Path, but taken as written: '[', ']', '*' and '?' are part of the name.</summary>
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathTensorSet, ValueFromPipelineByPropertyName = true)]
    // Items piped from Get-ChildItem bind here by PSPath (or FullName), so names holding [ ] * ? are taken as written.
    [Alias("PSPath", "LP", "FullName")]
    [ValidateNotNullOrEmpty]
    public string[] LiteralPath { get; set; } = [];

    /// <summary>Emit the tensors instead of the checkpoint.</summary>
    [Parameter(Mandatory = true, ParameterSetName = PathTensorSet)]
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathTensorSet)]
    public SwitchParameter Tensor { get; set; }

    /// <summary>Only tensors whose names match these wildcard patterns.</summary>
    [Parameter(ParameterSetName = PathTensorSet)]
    [Parameter(ParameterSetName = LiteralPathTensorSet)]
    [ArgumentCompleter(typeof(TensorNameCompleter))]
    public string[]? Name { get; set; }

    protected override void ProcessRecord()
    {
        bool literal = ParameterSetName is LiteralPathSet or LiteralPathTensorSet;
        foreach (var input in literal ? LiteralPath : Path)
        {
            try
            {
                foreach (var path in ResolveInput(input, literal))
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
