using System.Text.Json;
using BigModel.Checkpoints;
using BigModel.Checkpoints.PyTorch;
using BigModel.Errors;
using BigModel.Tests.Support;

namespace BigModel.Tests.Checkpoints.PyTorch;

/// <summary>
/// Archives written by torch.save itself (tests/reference/make_pytorch_fixtures.py, Debian's torch 1.13), checked
/// tensor by tensor against what torch reported: names in pickle order, dtype, shape, strides and bytes.
/// </summary>
public sealed class PyTorchFixtureTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    public static string Fixture(params string[] parts) => Path.Combine([AppContext.BaseDirectory, "fixtures", "pytorch", .. parts]);

    private sealed record Expected(string Name, string DType, long[] Shape, long[]? Strides, long StorageOffset, int ElementSize, string Hex);

    private static IReadOnlyList<Expected> ExpectedFor(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixture("valid", "expected.json")));
        return doc.RootElement.GetProperty(file).EnumerateArray().Select(e => new Expected(
            e.GetProperty("name").GetString()!,
            e.GetProperty("dtype").GetString()!,
            e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(),
            e.GetProperty("strides").ValueKind == JsonValueKind.Null ? null : e.GetProperty("strides").EnumerateArray().Select(x => x.GetInt64()).ToArray(),
            e.GetProperty("storage_offset").GetInt64(),
            e.GetProperty("element_size").GetInt32(),
            e.GetProperty("hex").GetString()!)).ToList();
    }

    public static TheoryData<string> ValidFiles() => ["hf_default.bin", "hf_protocol2.bin", "hf_protocol4.bin", "hf_protocol5.bin", "hf_buffer.bin", "nested.pt"];

    [Theory]
    [MemberData(nameof(ValidFiles))]
    public void Every_tensor_matches_what_torch_saved(string file)
    {
        var path = Fixture("valid", file);
        var tensors = PyTorchCheckpointReader.ReadTensors(path);
        var expected = ExpectedFor(file);
        Assert.Equal(expected.Select(e => e.Name), tensors.Select(t => t.Name));
        foreach (var (t, e) in tensors.Zip(expected))
        {
            Assert.Equal(e.DType, t.DType.SafetensorsName());
            Assert.Equal(e.Shape, t.Shape);
            Assert.Equal(e.Strides, t.Strides);
            Assert.Equal(Path.GetFullPath(path), t.File);
            Assert.Equal(e.Hex.Length / 2, t.ByteLength);
            Assert.Equal(e.Hex, Convert.ToHexStringLower(TensorData.ReadAll(t)));
        }
    }

    [Fact]
    public void Reports_the_views_torch_saved_as_strided_and_the_rest_as_dense()
    {
        var tensors = PyTorchCheckpointReader.ReadTensors(Fixture("valid", "hf_default.bin")).ToDictionary(t => t.Name);
        Assert.Equal(new long[] { 1, 8 }, tensors["model.layers.0.self_attn.q_proj.weight_t"].Strides);
        Assert.Equal(new long[] { 8, 1 }, tensors["model.layers.0.self_attn.q_proj.cols"].Strides);
        Assert.Equal(new long[] { 0, 1 }, tensors["model.expanded"].Strides);
        Assert.True(tensors["model.layers.0.self_attn.o_proj.bias_tail"].IsContiguous);
        Assert.True(tensors["model.position_ids"].IsContiguous);
        Assert.Equal(0, tensors["model.empty"].ByteLength);
        Assert.Empty(tensors["model.scale"].Shape);
        Assert.Equal(4, tensors["model.scale"].ByteLength);
        Assert.Equal(DType.BF16, tensors["model.layers.0.mlp.down_proj.weight"].DType);
        Assert.Equal(DType.BOOL, tensors["model.attention_mask"].DType);
        Assert.Equal(DType.C64, tensors["model.phase"].DType);
    }

    [Fact]
    public void Data_offsets_point_into_the_shared_storage_of_tied_weights_and_views()
    {
        var path = Fixture("valid", "hf_default.bin");
        var tensors = PyTorchCheckpointReader.ReadTensors(path).ToDictionary(t => t.Name);
        var expected = ExpectedFor("hf_default.bin").ToDictionary(e => e.Name);
        // Tied embeddings: two names, one storage, one offset.
        Assert.Equal(tensors["model.embed_tokens.weight"].DataOffset, tensors["lm_head.weight"].DataOffset);
        // Views start storage_offset elements into the storage of the tensor they view.
        var q = tensors["model.layers.0.self_attn.q_proj.weight"];
        Assert.Equal(q.DataOffset, tensors["model.layers.0.self_attn.q_proj.weight_t"].DataOffset);
        Assert.Equal(q.DataOffset + expected["model.layers.0.self_attn.q_proj.cols"].StorageOffset * 4, tensors["model.layers.0.self_attn.q_proj.cols"].DataOffset);
        var bias = tensors["model.layers.0.self_attn.o_proj.bias"];
        Assert.Equal(bias.DataOffset + 3 * 4, tensors["model.layers.0.self_attn.o_proj.bias_tail"].DataOffset);
        // torch aligns every storage to 64 bytes in the archive, and the offsets are absolute file positions.
        Assert.Equal(0, q.DataOffset % 64);
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(expected["model.layers.0.self_attn.q_proj.weight"].Hex[..16], Convert.ToHexStringLower(bytes.AsSpan((int)q.DataOffset, 8)));
    }

    [Fact]
    public void Nested_checkpoints_are_flattened_with_dotted_names_and_non_tensors_are_skipped()
    {
        var names = PyTorchCheckpointReader.ReadTensors(Fixture("valid", "nested.pt")).Select(t => t.Name).ToList();
        Assert.Equal(["model.encoder.weight", "model.encoder.bias", "optimizer.state.0.exp_avg", "ema.encoder.weight", "history.0"], names);
    }

    [Fact]
    public void The_top_folder_name_does_not_matter()
    {
        var fromFile = PyTorchCheckpointReader.ReadTensors(Fixture("valid", "hf_default.bin"));
        var fromBuffer = PyTorchCheckpointReader.ReadTensors(Fixture("valid", "hf_buffer.bin"));
        Assert.Equal(fromFile.Select(t => (t.Name, t.DType, t.ShapeText)), fromBuffer.Select(t => (t.Name, t.DType, t.ShapeText)));
    }

    [Fact]
    public void Checkpoint_Open_reads_a_pytorch_model_bin_folder_like_a_safetensors_one()
    {
        File.Copy(Fixture("valid", "hf_default.bin"), _dir.Combine("pytorch_model.bin"));
        var checkpoint = Checkpoint.Open(_dir.Path);
        Assert.Equal(CheckpointFormat.PyTorch, checkpoint.Format);
        Assert.Equal([_dir.Combine("pytorch_model.bin")], checkpoint.Files);
        var expected = ExpectedFor("hf_default.bin");
        Assert.Equal(expected.Count, checkpoint.Tensors.Count);
        Assert.Equal(expected.Sum(e => e.Hex.Length / 2L), checkpoint.ByteLength);
        foreach (var e in expected)
        {
            var t = checkpoint[e.Name];
            var streamed = new MemoryStream();
            TensorData.Read(t, chunk => streamed.Write(chunk), new byte[8]);
            Assert.Equal(e.Hex, Convert.ToHexStringLower(streamed.ToArray()));
        }
    }

    [Fact]
    public void Checkpoint_Open_reads_a_sharded_pytorch_checkpoint()
    {
        File.Copy(Fixture("valid", "hf_default.bin"), _dir.Combine("pytorch_model-00001-of-00002.bin"));
        File.Copy(Fixture("valid", "nested.pt"), _dir.Combine("pytorch_model-00002-of-00002.bin"));
        var first = PyTorchCheckpointReader.ReadTensors(_dir.Combine("pytorch_model-00001-of-00002.bin"));
        var weightMap = first.Select(t => $"\"{t.Name}\":\"pytorch_model-00001-of-00002.bin\"")
            .Append("\"ema.encoder.weight\":\"pytorch_model-00002-of-00002.bin\"");
        File.WriteAllText(_dir.Combine("pytorch_model.bin.index.json"), "{\"metadata\":{},\"weight_map\":{" + string.Join(",", weightMap) + "}}");
        var checkpoint = Checkpoint.Open(_dir.Path);
        Assert.Equal(CheckpointFormat.ShardedPyTorch, checkpoint.Format);
        Assert.Equal(first.Count + 1, checkpoint.Tensors.Count);
        var ema = checkpoint["ema.encoder.weight"];
        Assert.Equal(new long[] { 1, 2 }, ema.Strides);
        var expected = ExpectedFor("nested.pt").Single(e => e.Name == "ema.encoder.weight");
        Assert.Equal(expected.Hex, Convert.ToHexStringLower(TensorData.ReadAll(ema)));
    }

    [Fact]
    public void A_legacy_torch_file_is_refused_with_the_way_to_convert_it()
    {
        var e = Assert.Throws<BigModelException>(() => PyTorchCheckpointReader.ReadTensors(Fixture("other", "legacy.pt")));
        Assert.Equal(BigModelErrorCode.PickleLegacyFormat, e.Code);
        Assert.Contains("legacy serialization format", e.Message);
        Assert.Contains("torch.save(torch.load(path, weights_only=True)", e.Message);
    }

    [Fact]
    public void A_torchscript_archive_is_refused_as_such()
    {
        var e = Assert.Throws<BigModelException>(() => PyTorchCheckpointReader.ReadTensors(Fixture("other", "scripted.pt")));
        Assert.Equal(BigModelErrorCode.UnsupportedFormat, e.Code);
        Assert.Contains("TorchScript", e.Message);
        Assert.Contains("torch.jit.load", e.Message);
    }
}
