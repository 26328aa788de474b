using BigModel.Checkpoints;
using BigModel.IO;
using BigModel.Sharding;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace BigModel.Build.Tasks;

/// <summary>Reshards a checkpoint (Split-Checkpoint); skipped while its output is current.</summary>
public sealed class SplitCheckpoint : BigModelTask
{
    [Required] public ITaskItem Checkpoint { get; set; } = null!;
    [Required] public ITaskItem Destination { get; set; } = null!;
    public string MaxShardSize { get; set; } = "5GB";
    public string? DType { get; set; }

    /// <summary>The files of the resharded checkpoint (shards, index, copied files).</summary>
    [Output] public ITaskItem[] Files { get; private set; } = [];
    /// <summary>The file to open the new checkpoint with (the index, or model.safetensors).</summary>
    [Output] public string CheckpointPath { get; private set; } = "";
    [Output] public bool Skipped { get; private set; }

    protected override void Run()
    {
        var source = Checkpoints.Checkpoint.Open(FullPath(Checkpoint));
        var destination = FullPath(Destination);
        var parameters = string.Join("|", source.Path, MaxShardSize, DType, typeof(CheckpointSplitter).Assembly.GetName().Version);
        var inputs = source.Files.Append(Path.Combine(source.Directory, "config.json")).Where(File.Exists);
        if (IncrementalStamp.IsCurrent(destination, inputs, parameters))
        {
            Skipped = true;
            var existing = Checkpoints.Checkpoint.Open(destination);
            CheckpointPath = existing.IndexPath ?? existing.Files[0];
            Files = Directory.GetFiles(destination).Select(f => (ITaskItem)new TaskItem(f)).ToArray();
            Log.LogMessage(MessageImportance.Normal, "{0} is up to date.", destination);
            return;
        }
        // In a build the output is derived data: replace it whenever the inputs or parameters change.
        var result = CheckpointSplitter.Split(source, destination, SplitOptions.Parse(MaxShardSize, DType, force: true));
        CheckpointPath = result.CheckpointPath;
        Files = result.Files.Select(f => (ITaskItem)new TaskItem(f)).ToArray();
        Log.LogMessage(MessageImportance.High, "{0} -> {1}: {2} shard(s), {3} in {4:0.0} s.", source.Path, destination,
            result.ShardFiles.Count, ByteSize.Format(result.BytesWritten), result.Elapsed.TotalSeconds);
        IncrementalStamp.Write(destination, parameters);
    }
}
