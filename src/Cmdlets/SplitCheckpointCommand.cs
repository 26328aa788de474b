using System.Management.Automation;
using BigModel.Checkpoints;
using BigModel.Cmdlets.Infrastructure;
using BigModel.Errors;
using BigModel.Sharding;

namespace BigModel.Cmdlets;

/// <summary>Reshards a checkpoint into size-limited safetensors files, in constant memory, optionally converting its dtype.</summary>
/// <remarks>
/// <para>Reads single or sharded safetensors and PyTorch pytorch_model.bin checkpoints (so it is also the PyTorch-to-safetensors converter) and writes exactly what Hugging Face writes: model-00001-of-0000N.safetensors shards with __metadata__ {"format":"pt"} and 8-byte-aligned headers, and model.safetensors.index.json with metadata.total_size and the weight_map; a single shard is written as model.safetensors without an index. config.json, tokenizer and other non-weight files of the source folder are copied.</para>
/// <para>Tensors are planned in the model's forward order with huggingface_hub's greedy split: a shard closes when the next tensor would overflow it, and a tensor larger than the limit gets a shard of its own. Sizes accept 5GB (decimal), 5GiB (binary), KB/MB/GB/TB, KiB/MiB/GiB/TiB, or bytes.</para>
/// <para>-DType converts float32, float16 and bfloat16 tensors on the fly, bit for bit as torch's .to() does (round to nearest even); integer and bool tensors are untouched, and config.json's torch_dtype is updated.</para>
/// <para>Memory use does not depend on the model's size: tensors are streamed in bounded chunks. The output is written to a temporary folder beside the destination, verified, and only then moved into place; an interrupted run (Ctrl+C, a killed process, a full disk) never leaves a destination that looks valid but is not, and an existing destination is replaced only with -Force and only after success. -WhatIf prints the plan: shards, tensors per shard and sizes.</para>
/// </remarks>
/// <example>
/// <code>Split-Checkpoint ./Llama-2-7b-hf -Destination ./llama-2GB -MaxShardSize 2GB</code>
/// <para>Reshards a checkpoint into shards of at most 2 GB (decimal).</para>
/// </example>
/// <example>
/// <code>Split-Checkpoint ./model/pytorch_model.bin -Destination ./model-safetensors -MaxShardSize 10GB -DType bfloat16 -PassThru</code>
/// <para>Converts a PyTorch checkpoint to bfloat16 safetensors and returns the new checkpoint.</para>
/// </example>
/// <example>
/// <code>Get-Checkpoint ./model | Split-Checkpoint -Destination ./model-500MiB -MaxShardSize 500MiB -WhatIf</code>
/// <para>Shows the plan without writing anything.</para>
/// </example>
/// <returns>With -PassThru, BigModel.Checkpoints.Checkpoint: the new checkpoint.</returns>
[Cmdlet(VerbsCommon.Split, "Checkpoint", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(Checkpoint))]
public sealed class SplitCheckpointCommand : BigModelCmdlet
{
    private const string PathSet = "Path";
    private const string CheckpointSet = "Checkpoint";
    private readonly CancellationTokenSource _stop = new();

    /// <summary>The checkpoint to reshard: a weight file, an index file or a model folder.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath")]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>A checkpoint from Get-Checkpoint.</summary>
    [Parameter(Mandatory = true, ParameterSetName = CheckpointSet, ValueFromPipeline = true)]
    public Checkpoint? Checkpoint { get; set; }

    /// <summary>The folder to create. It must not be inside the source folder.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Destination { get; set; } = "";

    /// <summary>Largest shard: 5GB (decimal), 5GiB (binary), KB/MB/GB/TB, KiB/MiB/GiB/TiB, or bytes. Default 5GB, as huggingface_hub.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string MaxShardSize { get; set; } = "5GB";

    /// <summary>Convert floating-point tensors to this dtype; integer and bool tensors are kept.</summary>
    [Parameter]
    [ValidateSet("float32", "float16", "bfloat16", IgnoreCase = true)]
    public string? DType { get; set; }

    /// <summary>Replace an existing destination (only once the new one is complete and verified).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Return the new checkpoint.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        try
        {
            var source = Checkpoint ?? Checkpoints.Checkpoint.Open(ResolvePaths(Path).Single());
            var destination = ResolveNewPath(Destination);
            var plan = CheckpointSplitter.Plan(source, destination, Sharding.SplitOptions.Parse(MaxShardSize, DType, Force));
            foreach (var warning in plan.Warnings) WriteWarning(warning);
            WriteVerbose(plan.Describe(listTensors: true));
            var action = plan.DestinationExists ? "Replace with resharded checkpoint" : "Write resharded checkpoint";
            if (!ShouldProcess(plan.Describe(listTensors: true), $"{action} {destination}?", action)) return;

            var progress = new ProgressWriter(this, 1, $"Splitting into {destination}");
            SplitResult result;
            try
            {
                result = CheckpointSplitter.Execute(plan,
                    new SyncProgress<SplitProgress>(p => progress.Report(p.BytesDone, p.BytesTotal,
                        $"{p.Phase} {(p.ShardCount > 0 ? $"shard {p.Shard}/{p.ShardCount} " : "")}{p.Tensor}", force: p.Phase is SplitPhase.Completed)),
                    _stop.Token);
            }
            finally
            {
                progress.Complete();
            }
            foreach (var leftover in result.RecoveredLeftovers) WriteVerbose($"Cleaned up after an earlier interrupted run: {leftover}");
            WriteVerbose($"{result.Files.Count} files, {IO.ByteSize.Format(result.BytesWritten)} written in {result.Elapsed.TotalSeconds:0.0} s ({IO.ByteSize.Format((long)result.BytesPerSecond)}/s).");
            if (PassThru) WriteObject(result.Checkpoint);
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            throw new PipelineStoppedException();
        }
        catch (BigModelException e)
        {
            WriteBigModelError(e, Checkpoint?.Path ?? Path);
        }
    }

    protected override void StopProcessing() => _stop.Cancel();

    protected override void EndProcessing() => _stop.Dispose();
}
