using BigModel.Inference;
using BigModel.Tests.Inference.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace BigModel.Tests.Inference;

/// <summary>The one-token RMSNorm and rotary embedding against libtorch's formulation of the same operations.</summary>
[Collection(TorchCollection.Name)]
public sealed class OneTokenOpsTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(64)]
    [InlineData(1024)]
    [InlineData(1031)]
    public void RmsNorm_matches_libtorch(int width)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)width);
        var x = randn([1, 1, width], generator: generator) * 3;
        var weight = 1 + randn([width], generator: generator) * 0.1;
        const double eps = 1e-5;
        var expected = weight * (x * (x * x).mean([-1], keepdim: true).add(eps).rsqrt());

        Assert.True(OneTokenOps.TryRmsNorm(x, weight, eps, out var actual));
        Assert.Equal(x.shape, actual.shape);
        Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-6), $"max difference {(actual - expected).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData(4, 2, 8, 0)]
    [InlineData(16, 4, 64, 5)]
    [InlineData(12, 12, 96, 1000)]
    public void Rotation_matches_libtorch(int heads, int kvHeads, int headDim, int position)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)(heads * 1000 + position));
        var q = randn([1, 1, heads * headDim], generator: generator);
        var k = randn([1, 1, kvHeads * headDim], generator: generator);
        var frequencies = pow(10000.0, -arange(0, headDim, 2, ScalarType.Float32) / headDim);
        var angles = cat([frequencies, frequencies]) * position;
        var cos = angles.cos().view(1, headDim);
        var sin = angles.sin().view(1, headDim);

        Tensor Reference(Tensor x, int n)
        {
            var h = x.view(1, 1, n, headDim).transpose(1, 2);
            long half = headDim / 2;
            var rotated = cat([-h.narrow(-1, half, half), h.narrow(-1, 0, half)], -1);
            return (h * cos + rotated * sin).transpose(1, 2).reshape(1, 1, n * headDim);
        }
        var expectedQ = Reference(q, heads);
        var expectedK = Reference(k, kvHeads);

        Assert.True(OneTokenOps.TryRotate(q, k, cos, sin, headDim));
        Assert.True(q.eq(expectedQ).all().item<bool>(), $"queries differ by up to {(q - expectedQ).abs().max().item<float>()}");
        Assert.True(k.eq(expectedK).all().item<bool>(), $"keys differ by up to {(k - expectedK).abs().max().item<float>()}");
    }

    [Fact]
    public void Half_precision_rounds_as_libtorch_does()
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(77);
        const int headDim = 64;
        var x = (randn([1, 1, 1024], generator: generator) * 3).to(ScalarType.Float16);
        var weight = (1 + randn([1024], generator: generator) * 0.1).to(ScalarType.Float16);
        var f = x.to(ScalarType.Float32);
        var expectedNorm = weight * (f * (f * f).mean([-1], keepdim: true).add(1e-6).rsqrt()).to(ScalarType.Float16);
        Assert.True(OneTokenOps.TryRmsNorm(x, weight, 1e-6, out var norm));
        Assert.Equal(ScalarType.Float16, norm.dtype);
        // The mean of squares may be summed in another order: allow one rounding of the result.
        Assert.True(norm.to(ScalarType.Float32).allclose(expectedNorm.to(ScalarType.Float32), rtol: 1e-3, atol: 1e-3));

        var q = randn([1, 1, 4 * headDim], generator: generator).to(ScalarType.Float16);
        var k = randn([1, 1, 2 * headDim], generator: generator).to(ScalarType.Float16);
        var frequencies = pow(10000.0, -arange(0, headDim, 2, ScalarType.Float32) / headDim);
        var angles = cat([frequencies, frequencies]) * 37;
        var cos = angles.cos().view(1, headDim).to(ScalarType.Float16);
        var sin = angles.sin().view(1, headDim).to(ScalarType.Float16);
        Tensor Reference(Tensor t, int n)
        {
            var h = t.view(1, 1, n, headDim).transpose(1, 2);
            var rotated = cat([-h.narrow(-1, headDim / 2, headDim / 2), h.narrow(-1, 0, headDim / 2)], -1);
            return (h * cos + rotated * sin).transpose(1, 2).reshape(1, 1, n * headDim);
        }
        var expectedQ = Reference(q, 4);
        var expectedK = Reference(k, 2);
        Assert.True(OneTokenOps.TryRotate(q, k, cos, sin, headDim));
        Assert.True(q.eq(expectedQ).all().item<bool>(), $"queries differ by up to {(q - expectedQ).abs().max().item<Half>()}");
        Assert.True(k.eq(expectedK).all().item<bool>(), $"keys differ by up to {(k - expectedK).abs().max().item<Half>()}");
    }

    [Fact]
    public void Leaves_what_it_does_not_handle_to_libtorch()
    {
        using var scope = NewDisposeScope();
        var brain = ones([1, 1, 8], ScalarType.BFloat16);
        Assert.False(OneTokenOps.TryRmsNorm(brain, ones([8], ScalarType.BFloat16), 1e-6, out _));
        Assert.False(OneTokenOps.TryRmsNorm(ones([1, 1, 8], ScalarType.Float16), ones([8]), 1e-6, out _));
        var twoTokens = ones([1, 2, 8]);
        Assert.False(OneTokenOps.TryRmsNorm(twoTokens, ones([8]), 1e-6, out _));
        Assert.False(OneTokenOps.TryRotate(ones([1, 2, 8]), ones([1, 1, 8]), ones([1, 8]), ones([1, 8]), 8));
        Assert.False(OneTokenOps.TryRmsNorm(ones([1, 16])[.., ..8].expand(2, 8), ones([8]), 1e-6, out _));
        Assert.False(OneTokenOps.TryRotate(ones([1, 1, 8]), ones([1, 1, 8]), ones([1, 8], ScalarType.Float64), ones([1, 8]), 8));
    }
}
