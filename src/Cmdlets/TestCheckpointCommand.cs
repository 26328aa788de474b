using System.Management.Automation;
using BigModel.Checkpoints;
using BigModel.Cmdlets.Infrastructure;
using BigModel.Errors;

namespace BigModel.Cmdlets;

/// <summary>
/// <para type="synopsis">Validates a checkpoint: headers, offsets, index, paths and shapes; with -Deep every value.</para>
/// </summary>
[Cmdlet(VerbsDiagnostic.Test, "Checkpoint")]
[OutputType(typeof(CheckpointValidationResult))]
public sealed class TestCheckpointCommand : BigModelCmdlet
{
    /// <summary>A weight file, an index file or a model folder. Wildcards are allowed.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath")]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = [];

    /// <summary>Also read every tensor and count NaN and infinite values.</summary>
    [Parameter]
    public SwitchParameter Deep { get; set; }

    /// <summary>Also compute each weight file's SHA-256.</summary>
    [Parameter]
    public SwitchParameter Hash { get; set; }

    /// <summary>Report non-finite values as warnings rather than errors.</summary>
    [Parameter]
    public SwitchParameter AllowNonFinite { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var input in Path)
        {
            IReadOnlyList<string> paths;
            try
            {
                paths = ResolvePaths(input);
            }
            catch (BigModelException e)
            {
                WriteBigModelError(e, input);
                continue;
            }
            foreach (var path in paths)
            {
                var progress = new ProgressWriter(this, 1, $"Validating {System.IO.Path.GetFileName(path)}");
                var options = new ValidationOptions { Deep = Deep, Hash = Hash, FailOnNonFinite = !AllowNonFinite };
                CheckpointValidationResult result;
                try
                {
                    result = CheckpointValidator.Validate(path, options,
                        Deep || Hash ? new SyncProgress<ValidationProgress>(p => progress.Report(p.BytesDone, p.BytesTotal, p.CurrentTensor)) : null);
                }
                catch (BigModelException e)
                {
                    WriteBigModelError(e, path);
                    continue;
                }
                finally
                {
                    if (Deep || Hash) progress.Complete();
                }
                foreach (var problem in result.Problems.Where(p => !p.IsError))
                    WriteWarning($"{problem.File ?? result.Path}: {(problem.Tensor is null ? "" : $"tensor '{problem.Tensor}': ")}{problem.Message}");
                WriteObject(result);
                // The result carries every problem; the error makes -ErrorAction Stop and $? work as scripts expect.
                if (result.Problems.FirstOrDefault(p => p.IsError) is { } first)
                    WriteBigModelError(new BigModelException(first.Code,
                        result.ErrorCount > 1 ? $"{first.Message} ({result.ErrorCount - 1} more problem(s) in the result's Problems)" : first.Message,
                        first.File ?? result.Path, tensor: first.Tensor), result);
            }
        }
    }
}
