using BigModel.Errors;
using BigModel.Inference;

namespace BigModel.Tests.Inference;

public sealed class PlacementTests
{
    [Theory]
    [InlineData("cpu", WeightLocationKind.Cpu, -1)]
    [InlineData("CPU", WeightLocationKind.Cpu, -1)]
    [InlineData("disk", WeightLocationKind.Disk, -1)]
    [InlineData("cuda", WeightLocationKind.Cuda, 0)]
    [InlineData("cuda:3", WeightLocationKind.Cuda, 3)]
    [InlineData("1", WeightLocationKind.Cuda, 1)]
    [InlineData(" cuda:0 ", WeightLocationKind.Cuda, 0)]
    public void Parses_accelerate_device_spellings(string text, WeightLocationKind kind, int index)
    {
        var location = WeightLocation.Parse(text);
        Assert.Equal(kind, location.Kind);
        Assert.Equal(index, location.DeviceIndex);
    }

    [Theory]
    [InlineData("mps")]
    [InlineData("meta")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("gpu")]
    [InlineData("")]
    [InlineData("99999")]
    public void Refuses_anything_else(string text)
    {
        var e = Assert.Throws<BigModelException>(() => WeightLocation.Parse(text, "model.layers.0"));
        Assert.Equal(BigModelErrorCode.InvalidDevice, e.Code);
        Assert.Contains("model.layers.0", e.Message);
    }

    [Fact]
    public void The_longest_covering_key_wins_and_keys_match_whole_segments()
    {
        var resolver = new PlacementResolver(new Dictionary<string, string>
        {
            [""] = "cpu",
            ["model.layers.1"] = "disk",
            ["model.layers.1.mlp"] = "cuda:0",
        });
        Assert.Equal(WeightLocation.Cpu, resolver.Find("model.embed_tokens.weight"));
        Assert.Equal(WeightLocation.Disk, resolver.Find("model.layers.1.self_attn.q_proj.weight"));
        Assert.Equal(WeightLocation.CudaDevice(0), resolver.Find("model.layers.1.mlp.up_proj.weight"));
        // "model.layers.1" must not cover "model.layers.10".
        Assert.Equal(WeightLocation.Cpu, resolver.Find("model.layers.10.mlp.up_proj.weight"));
        Assert.Equal(WeightLocation.Disk, resolver.Find("model.layers.1"));
    }

    [Fact]
    public void An_uncovered_tensor_is_a_device_map_error()
    {
        var resolver = new PlacementResolver(new Dictionary<string, string> { ["model.layers.0"] = "cpu" });
        Assert.Null(resolver.Find("model.norm.weight"));
        var e = Assert.Throws<BigModelException>(() => resolver.Require("model.norm.weight"));
        Assert.Equal(BigModelErrorCode.InvalidDeviceMap, e.Code);
        Assert.Equal("model.norm.weight", e.Tensor);
    }
}
