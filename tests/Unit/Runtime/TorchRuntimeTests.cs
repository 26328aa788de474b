using TorchSharp;
using static TorchSharp.torch;

namespace BigModel.Tests.Runtime;

/// <summary>Proves the native libtorch runtime loads (with the GLIBCXX patch on Debian 12) and really computes.</summary>
public sealed class TorchRuntimeTests
{
    [Fact]
    public void Multiplies_matrices_with_libtorch()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new float[] { 1, 2, 3, 4, 5, 6 }, [2, 3]);
        var b = tensor(new float[] { 7, 8, 9, 10, 11, 12 }, [3, 2]);
        var c = matmul(a, b);
        Assert.Equal(new float[] { 58, 64, 139, 154 }, c.data<float>().ToArray());
    }

    [Fact]
    public void Runs_softmax_and_reductions_in_native_code()
    {
        using var scope = NewDisposeScope();
        var x = arange(0, 1000, dtype: ScalarType.Float32).reshape(10, 100);
        var s = nn.functional.softmax(x, dim: 1).sum(1);
        foreach (var v in s.data<float>().ToArray()) Assert.Equal(1f, v, 5);
        Assert.Equal(499500f, x.sum().item<float>());
    }
}
