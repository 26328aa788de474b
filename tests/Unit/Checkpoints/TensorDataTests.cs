using BigModel.Checkpoints;
using BigModel.Tests.Support;

namespace BigModel.Tests.Checkpoints;

/// <summary>Chunked reads end where whole elements end, whatever the dtype's width.</summary>
public sealed class TensorDataTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(DType.F6_E2M3, 40, 3)]
    [InlineData(DType.F4, 40, 1)]
    [InlineData(DType.F16, 40, 2)]
    [InlineData(DType.F64, 40, 8)]
    public void Chunks_of_a_small_buffer_hold_whole_elements(DType dtype, long elements, int granule)
    {
        var path = _dir.Combine($"{dtype}.safetensors");
        var data = CheckpointFiles.WriteSafetensors(path, [new TensorSpec("t", dtype, [elements])]);
        var tensor = SafetensorsHeader.Read(path).Tensors[0];
        var chunks = new List<byte[]>();
        TensorData.Read(tensor, chunk => chunks.Add(chunk.ToArray()), new byte[10]);
        Assert.All(chunks.SkipLast(1), c => Assert.Equal(0, c.Length % granule));
        Assert.Equal(data["t"], chunks.SelectMany(c => c).ToArray());
    }
}
