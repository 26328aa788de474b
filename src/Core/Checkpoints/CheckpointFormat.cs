namespace BigModel.Checkpoints;

/// <summary>How a checkpoint's weights are stored.</summary>
public enum CheckpointFormat
{
    /// <summary>One <c>*.safetensors</c> file.</summary>
    Safetensors,
    /// <summary>Several safetensors shards listed by a <c>*.safetensors.index.json</c>.</summary>
    ShardedSafetensors,
    /// <summary>One PyTorch zip archive (<c>pytorch_model.bin</c>).</summary>
    PyTorch,
    /// <summary>Several PyTorch archives listed by <c>pytorch_model.bin.index.json</c>.</summary>
    ShardedPyTorch,
}
