using BigModel.Checkpoints;
using BigModel.Sharding;

namespace BigModel.Tests.Sharding;

/// <summary>PyTorch archives store tied weights once under several names; safetensors files must hold each once.</summary>
public sealed class TensorAliasTests
{
    [Fact]
    public void Keeps_the_first_name_in_forward_order_for_identical_views_only()
    {
        TensorInfo[] tensors =
        [
            new("model.embed_tokens.weight", DType.F32, [4, 2], 32, "/m/pytorch_model.bin", 1000),
            new("model.layers.0.weight", DType.F32, [2, 2], 16, "/m/pytorch_model.bin", 2000),
            // A view of the same storage with another shape, a transposed view, and a view in another file: all distinct.
            new("model.layers.0.reshaped", DType.F32, [4], 16, "/m/pytorch_model.bin", 2000),
            new("model.layers.0.transposed", DType.F32, [2, 2], 16, "/m/pytorch_model.bin", 2000, [1, 2]),
            new("model.layers.1.weight", DType.F32, [2, 2], 16, "/m/other.bin", 2000),
            new("empty.a", DType.F32, [0], 0, "/m/pytorch_model.bin", 5000),
            new("empty.b", DType.F32, [0], 0, "/m/pytorch_model.bin", 5000),
            new("lm_head.weight", DType.F32, [4, 2], 32, "/m/pytorch_model.bin", 1000),
        ];
        var (kept, aliases) = CheckpointSplitter.DropAliases(tensors);
        Assert.Equal([new TensorAlias("lm_head.weight", "model.embed_tokens.weight")], aliases);
        Assert.Equal(tensors.Select(t => t.Name).Where(n => n != "lm_head.weight"), kept.Select(t => t.Name));
    }
}
