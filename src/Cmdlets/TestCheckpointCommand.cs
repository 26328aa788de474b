using System.Management.Automation;
using BigModel.Checkpoints;
using BigModel.Cmdlets.Infrastructure;
using BigModel.Errors;

namespace BigModel.Cmdlets;

/// <summary>Validates a checkpoint: headers, offsets, index, paths and shapes; with -Deep, every value.</summary>
/// <remarks>
/// <para>Performs every check Get-Checkpoint performs and collects all problems instead of stopping at the first: header size and syntax, dtypes, shapes and byte lengths, offsets that tile the data section exactly, index entries and their shards, tensors the index does not list, the declared total size, and agreement of tensor shapes with config.json.</para>
/// <para>-Deep reads every tensor and counts NaN and infinite values in floating-point tensors; -Hash computes each weight file's SHA-256. Progress is reported while reading.</para>
/// <para>A result object is always written. When the checkpoint is invalid an error is written too, with the first problem's stable error id, so -ErrorAction Stop and $? behave as scripts expect.</para>
/// </remarks>
/// <example>
/// <code>Test-Checkpoint ./model -Deep -Hash</code>
/// <para>Validates a checkpoint, reads all its values and hashes its files.</para>
/// </example>
/// <example>
/// <code>Get-ChildItem ./shards/*.safetensors | Test-Checkpoint | Where-Object { -not $_.IsValid }</code>
/// <para>Validates every shard file on its own and keeps the broken ones.</para>
/// </example>
/// <example>
/// <code>try { Test-Checkpoint ./download -ErrorAction Stop } catch { "Rejected: $($_.FullyQualifiedErrorId)" }</code>
/// <para>Stops a script on an invalid checkpoint.</para>
/// </example>
/// <returns>BigModel.Checkpoints.CheckpointValidationResult: IsValid, Problems, NonFiniteTensors, Hashes, BytesRead.</returns>
[Cmdlet(VerbsDiagnostic.Test, "Checkpoint", DefaultParameterSetName = PathSet)]
[OutputType(typeof(CheckpointValidationResult))]
public sealed class TestCheckpointCommand : BigModelCmdlet, IDisposable
{
    private const string PathSet = "Path";
    private const string LiteralPathSet = "LiteralPath";

    /// <summary>A weight file, an index file or a model folder. Wildcards are allowed.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    public string[] Path { get; set; } = [];

    /// <summary>Like -Path, but taken as written: '[', ']', '*' and '?' are part of the name.</summary>
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
    // Items piped from Get-ChildItem bind here by PSPath (or FullName), so names holding [ ] * ? are taken as written.
    [Alias("PSPath", "LP", "FullName")]
    [ValidateNotNullOrEmpty]
    public string[] LiteralPath { get; set; } = [];

    /// <summary>Also read every tensor and count NaN and infinite values.</summary>
    [Parameter]
    public SwitchParameter Deep { get; set; }

    /// <summary>Also compute each weight file's SHA-256.</summary>
    [Parameter]
    public SwitchParameter Hash { get; set; }

    /// <summary>Report non-finite values as warnings rather than errors.</summary>
    [Parameter]
    public SwitchParameter AllowNonFinite { get; set; }

    private readonly CancellationTokenSource _stop = new();

    protected override void ProcessRecord()
    {
        bool literal = ParameterSetName == LiteralPathSet;
        foreach (var input in literal ? LiteralPath : Path)
        {
            IReadOnlyList<string> paths;
            try
            {
                paths = ResolveInput(input, literal);
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
                        Deep || Hash ? new SyncProgress<ValidationProgress>(p => progress.Report(p.BytesDone, p.BytesTotal, p.CurrentTensor)) : null,
                        _stop.Token);
                }
                catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                {
                    throw new PipelineStoppedException();
                }
                catch (BigModelException e)
                {
                    WriteBigModelError(e, path);
                    continue;
                }
                finally
                {
                    if ((Deep || Hash) && !_stop.IsCancellationRequested) progress.Complete();
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

    /// <summary>Ctrl+C or Stop(): the validation notices within one chunk (a megabyte hashed, a few megabytes of values).</summary>
    protected override void StopProcessing() => _stop.Cancel();

    public void Dispose() => _stop.Dispose();
}
