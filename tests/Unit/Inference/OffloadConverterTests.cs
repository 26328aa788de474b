using BigModel.Checkpoints;
using BigModel.Inference;
using BigModel.Tests.Support;

namespace BigModel.Tests.Inference;

public sealed class OffloadConverterTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private TensorInfo[] Source()
    {
        var path = _dir.Combine("source.safetensors");
        if (!File.Exists(path)) SafetensorsBytes.Write(path,
            """{"a":{"dtype":"F32","shape":[3,4],"data_offsets":[0,48]},"b":{"dtype":"F32","shape":[2],"data_offsets":[48,56]}}""",
            SafetensorsBytes.Floats(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 20, 21));
        var header = SafetensorsHeader.Read(path);
        var a = header.Tensors.Single(t => t.Name == "a");
        // A strided view as PyTorch archives can hold: the transpose of a, [4, 3] with strides [1, 4].
        var transposed = new TensorInfo("a_t", DType.F32, [4, 3], 48, a.File, a.DataOffset, [1, 4]);
        return [a, header.Tensors.Single(t => t.Name == "b"), transposed];
    }

    [Fact]
    public void Writes_one_mappable_safetensors_file_with_strided_tensors_made_dense()
    {
        var converted = OffloadConverter.Convert(Source(), _dir.Combine("offload"), null, CancellationToken.None);
        Assert.Equal(["a", "a_t", "b"], converted.Keys.Order());
        var file = converted["a"].File;
        Assert.StartsWith(_dir.Combine("offload"), file);
        Assert.All(converted.Values, t => Assert.True(t.IsContiguous && MappedWeightFiles.CanView(t)));
        Assert.Equal(SafetensorsBytes.Floats(0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11), TensorData.ReadAll(converted["a_t"]));
        Assert.Equal(SafetensorsBytes.Floats(20, 21), TensorData.ReadAll(converted["b"]));
        Assert.Single(Directory.GetFiles(_dir.Combine("offload")));
    }

    [Fact]
    public void An_unchanged_source_is_converted_once_and_a_changed_one_again()
    {
        var first = OffloadConverter.Convert(Source(), _dir.Combine("offload"), null, CancellationToken.None)["a"].File;
        var stamp = File.GetLastWriteTimeUtc(first);
        Thread.Sleep(20);
        Assert.Equal(first, OffloadConverter.Convert(Source(), _dir.Combine("offload"), null, CancellationToken.None)["a"].File);
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(first));

        File.SetLastWriteTimeUtc(_dir.Combine("source.safetensors"), DateTime.UtcNow.AddMinutes(1));
        var second = OffloadConverter.Convert(Source(), _dir.Combine("offload"), null, CancellationToken.None)["a"].File;
        Assert.NotEqual(first, second);
    }

    [Fact]
    public void A_cancelled_conversion_leaves_no_file_behind()
    {
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        Assert.Throws<OperationCanceledException>(() => OffloadConverter.Convert(Source(), _dir.Combine("offload"), null, cancel.Token));
        Assert.Empty(Directory.GetFiles(_dir.Combine("offload")));
    }
}
