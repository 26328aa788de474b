using System.Buffers.Binary;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Tests.Support;

namespace BigModel.Tests.Checkpoints;

public sealed class CheckpointValidatorTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Counts_nan_and_infinity_per_dtype()
    {
        var f32 = SafetensorsBytes.Floats(1, float.NaN, float.PositiveInfinity, float.NegativeInfinity);
        var f16 = new byte[6];
        BinaryPrimitives.WriteUInt16LittleEndian(f16, 0x7C00);      // +inf
        BinaryPrimitives.WriteUInt16LittleEndian(f16.AsSpan(2), 0x7E00); // NaN
        BinaryPrimitives.WriteUInt16LittleEndian(f16.AsSpan(4), 0x3C00); // 1.0
        var bf16 = new byte[4];
        BinaryPrimitives.WriteUInt16LittleEndian(bf16, 0xFFC0);     // NaN
        BinaryPrimitives.WriteUInt16LittleEndian(bf16.AsSpan(2), 0x3F80); // 1.0
        var path = CheckpointBuilder.Safetensors(_dir.Combine("m.safetensors"),
            [("a", DType.F32, [4]), ("b", DType.F16, [3]), ("c", DType.BF16, [2]), ("d", DType.I32, [1])],
            new Dictionary<string, byte[]> { ["a"] = f32, ["b"] = f16, ["c"] = bf16, ["d"] = BitConverter.GetBytes(0x7F800001) });
        var result = CheckpointValidator.Validate(path, new ValidationOptions { Deep = true, Hash = true });
        Assert.False(result.IsValid);
        Assert.Equal((1L, 2L), result.NonFiniteTensors.Where(t => t.Tensor == "a").Select(t => (t.NaNCount, t.InfinityCount)).Single());
        Assert.Equal((1L, 1L), result.NonFiniteTensors.Where(t => t.Tensor == "b").Select(t => (t.NaNCount, t.InfinityCount)).Single());
        Assert.Equal((1L, 0L), result.NonFiniteTensors.Where(t => t.Tensor == "c").Select(t => (t.NaNCount, t.InfinityCount)).Single());
        Assert.DoesNotContain(result.NonFiniteTensors, t => t.Tensor == "d");
        var hash = Assert.Single(result.Hashes);
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path))), hash.Sha256);
        Assert.Equal(new FileInfo(path).Length + 16 + 6 + 4 + 4, result.BytesRead);
    }

    [Fact]
    public void Collects_an_opening_failure_as_a_problem_instead_of_throwing()
    {
        var path = SafetensorsBytes.Write(_dir.Combine("bad.safetensors"), "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", new byte[4]);
        var result = CheckpointValidator.Validate(path);
        Assert.False(result.IsValid);
        Assert.Equal(BigModelErrorCode.SafetensorsDataLengthMismatch, Assert.Single(result.Problems).Code);
    }

    [Fact]
    public void Checks_shapes_against_config()
    {
        var folder = _dir.Combine("m");
        CheckpointBuilder.Config(folder, """
            {"model_type":"llama","architectures":["LlamaForCausalLM"],"hidden_size":4,"intermediate_size":8,"num_hidden_layers":1,
             "num_attention_heads":2,"num_key_value_heads":1,"vocab_size":10,"tie_word_embeddings":true}
            """);
        CheckpointBuilder.Safetensors(Path.Combine(folder, "model.safetensors"),
        [
            ("model.embed_tokens.weight", DType.F32, [10, 4]),
            ("model.layers.0.self_attn.q_proj.weight", DType.F32, [4, 4]),
            ("model.layers.0.self_attn.k_proj.weight", DType.F32, [4, 4]), // config implies [2, 4]
            ("model.layers.0.self_attn.v_proj.weight", DType.F32, [2, 4]),
            ("model.layers.0.self_attn.o_proj.weight", DType.F32, [4, 4]),
            ("model.layers.0.mlp.gate_proj.weight", DType.F32, [8, 4]),
            ("model.layers.0.mlp.up_proj.weight", DType.F32, [8, 4]),
            ("model.layers.0.mlp.down_proj.weight", DType.F32, [4, 8]),
            ("model.layers.0.input_layernorm.weight", DType.F32, [4]),
            ("model.norm.weight", DType.F32, [4]),
        ]);
        var result = CheckpointValidator.Validate(folder);
        Assert.False(result.IsValid);
        var error = Assert.Single(result.Problems, p => p.IsError);
        Assert.Equal("model.layers.0.self_attn.k_proj.weight", error.Tensor);
        Assert.Contains(result.Problems, p => !p.IsError && p.Tensor == "model.layers.0.post_attention_layernorm.weight");
    }

    [SkippableModelFact]
    public void Stories260K_is_valid_and_finite()
    {
        var result = CheckpointValidator.Validate(SharedModels.Stories260K, new ValidationOptions { Deep = true });
        Assert.True(result.IsValid, string.Join("; ", result.Problems.Select(p => p.Message)));
        Assert.Empty(result.Problems);
        Assert.Empty(result.NonFiniteTensors);
    }

    /// <summary>A safetensors file whose data is a hole: <paramref name="bytes"/> of zeros that cost no disk.</summary>
    private string SparseFile(string name, long bytes)
    {
        var path = _dir.Combine(name);
        var layout = SafetensorsLayout.Create([new TensorSpec("big", DType.F32, [bytes / 4])]);
        using var file = File.Create(path);
        file.Write(BitConverter.GetBytes((ulong)layout.Header.Length));
        file.Write(layout.Header);
        file.SetLength(layout.FileLength);
        return path;
    }

    private sealed class Recorder(Action<ValidationProgress>? onReport = null) : IProgress<ValidationProgress>
    {
        public List<ValidationProgress> Reports { get; } = [];

        public void Report(ValidationProgress value)
        {
            Reports.Add(value);
            onReport?.Invoke(value);
        }
    }

    [Fact]
    public void Deep_reading_and_hashing_report_progress_per_chunk()
    {
        var path = SparseFile("big.safetensors", 20L << 20);
        var recorder = new Recorder();
        var result = CheckpointValidator.Validate(path, new ValidationOptions { Deep = true, Hash = true }, recorder);
        Assert.True(result.IsValid);
        // 20 MiB of values in 8 MiB chunks, then 20 MiB hashed in 1 MiB chunks.
        Assert.True(recorder.Reports.Count(r => r.CurrentTensor == "big") >= 3, "deep reading reported progress only per tensor");
        Assert.True(recorder.Reports.Count(r => r.CurrentTensor == "big.safetensors") >= 20, "hashing reported progress only per file");
        Assert.Equal(recorder.Reports.Select(r => r.BytesDone).Order(), recorder.Reports.Select(r => r.BytesDone));
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path))), Assert.Single(result.Hashes).Sha256);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Cancelling_stops_inside_a_file(bool deep)
    {
        var path = SparseFile("big.safetensors", 64L << 20);
        using var cancel = new CancellationTokenSource();
        var recorder = new Recorder(p => { if (p.BytesDone > 0) cancel.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() =>
            CheckpointValidator.Validate(path, new ValidationOptions { Deep = deep, Hash = !deep }, recorder, cancel.Token));
        Assert.True(recorder.Reports.Max(r => r.BytesDone) <= 16L << 20, "work went on after cancellation");
    }
}
