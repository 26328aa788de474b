using System.Text.Json;
using BigModel.Checkpoints;
using BigModel.Sharding;
using BigModel.Tests.Checkpoints.PyTorch;
using BigModel.Tests.Support;

namespace BigModel.Tests.Sharding;

/// <summary>
/// PyTorch archives written by torch.save (tests/reference/make_pytorch_fixtures.py) converted to safetensors shards:
/// every tensor, strided views and tied weights included, must come out with the bytes torch reported for it.
/// </summary>
public sealed class PyTorchSplitTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Dictionary<string, (DType DType, byte[] Bytes)> Expected()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(PyTorchFixtureTests.Fixture("valid", "expected.json")));
        return doc.RootElement.GetProperty("hf_default.bin").EnumerateArray().ToDictionary(
            e => e.GetProperty("name").GetString()!,
            e => (DTypes.TryParseSafetensors(e.GetProperty("dtype").GetString()!, out var d) ? d : throw new InvalidDataException(),
                Convert.FromHexString(e.GetProperty("hex").GetString()!)));
    }

    private string SourceFolder()
    {
        var folder = _dir.Combine("bin-model");
        Directory.CreateDirectory(folder);
        File.Copy(PyTorchFixtureTests.Fixture("valid", "hf_default.bin"), Path.Combine(folder, "pytorch_model.bin"));
        File.WriteAllText(Path.Combine(folder, "config.json"), "{\n  \"model_type\": \"llama\",\n  \"torch_dtype\": \"float32\"\n}\n");
        return folder;
    }

    [Theory]
    [InlineData(null)]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    public void Converts_a_pytorch_archive_into_safetensors_shards_with_torchs_bytes(DType? dtype)
    {
        var source = Checkpoint.Open(SourceFolder());
        Assert.Equal(CheckpointFormat.PyTorch, source.Format);
        var result = CheckpointSplitter.Split(source, _dir.Combine("out"), new SplitOptions { MaxShardSize = 700, DType = dtype });
        Assert.True(result.Plan.IsSharded);

        // The tied head is stored once, under the embedding's name, as transformers saves it.
        Assert.Equal([new TensorAlias("lm_head.weight", "model.embed_tokens.weight")], result.Plan.Aliases);
        var written = Checkpoint.Open(result.Destination);
        Assert.Null(written.Find("lm_head.weight"));
        foreach (var (name, (sourceType, bytes)) in Expected())
        {
            if (name == "lm_head.weight") continue;
            var tensor = written[name];
            var expectedType = DTypeConverter.ConvertedType(sourceType, dtype);
            Assert.Equal(expectedType, tensor.DType);
            var expected = bytes;
            if (expectedType != sourceType)
            {
                expected = new byte[tensor.ByteLength];
                DTypeConverter.Convert(sourceType, expectedType, bytes, expected);
            }
            Assert.True(expected.AsSpan().SequenceEqual(TensorData.ReadAll(tensor)), $"{name} differs");
            Assert.True(tensor.IsContiguous);
        }
    }
}
