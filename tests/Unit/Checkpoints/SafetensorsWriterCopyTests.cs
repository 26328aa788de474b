using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Tests.Support;

namespace BigModel.Tests.Checkpoints;

public sealed class SafetensorsWriterCopyTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Copies_file_ranges_between_ordinary_writes(bool kernelCopy)
    {
        var source = _dir.Combine("source.bin");
        var bytes = Enumerable.Range(0, 300_000).Select(i => (byte)(i * 31 + 7)).ToArray();
        File.WriteAllBytes(source, bytes);
        var layout = SafetensorsLayout.Create([new TensorSpec("a", DType.U8, [100_000]), new TensorSpec("b", DType.U8, [3]), new TensorSpec("c", DType.U8, [150_000])]);
        var path = _dir.Combine($"copy-{kernelCopy}.safetensors");
        using (var handle = File.OpenHandle(source))
        using (var writer = new SafetensorsWriter(path, layout) { KernelCopy = kernelCopy })
        {
            writer.CopyFrom(handle, 5, 100_000, new byte[4096]);
            writer.Write([1, 2, 3]);
            writer.CopyFrom(handle, 150_000, 150_000, new byte[4096]);
            Assert.Equal(kernelCopy && OperatingSystem.IsLinux(), writer.KernelCopy);
            writer.Complete();
        }
        var header = SafetensorsHeader.Read(path);
        Assert.Equal(bytes.AsSpan(5, 100_000).ToArray(), TensorData.ReadAll(header.Tensors.Single(t => t.Name == "a")));
        Assert.Equal([1, 2, 3], TensorData.ReadAll(header.Tensors.Single(t => t.Name == "b")));
        Assert.Equal(bytes.AsSpan(150_000).ToArray(), TensorData.ReadAll(header.Tensors.Single(t => t.Name == "c")));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_source_shorter_than_the_range_is_an_error(bool kernelCopy)
    {
        var source = _dir.Combine("short.bin");
        File.WriteAllBytes(source, new byte[100]);
        var layout = SafetensorsLayout.Create([new TensorSpec("a", DType.U8, [1000])]);
        using var handle = File.OpenHandle(source);
        using var writer = new SafetensorsWriter(_dir.Combine($"short-{kernelCopy}.safetensors"), layout) { KernelCopy = kernelCopy };
        var e = Assert.Throws<BigModelException>(() => writer.CopyFrom(handle, 0, 1000, new byte[64]));
        Assert.Equal(BigModelErrorCode.IoFailure, e.Code);
        Assert.Equal(BigModelErrorCode.WriteVerificationFailed,
            Assert.Throws<BigModelException>(() => writer.CopyFrom(handle, 0, 2000, new byte[64])).Code);
    }
}
