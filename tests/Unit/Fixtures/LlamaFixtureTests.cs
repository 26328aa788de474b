using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Fixtures.Synthetic;
using BigModel.Tests.Support;

namespace BigModel.Tests.Fixtures;

public sealed class LlamaFixtureTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static readonly LlamaOptions Small = new()
    {
        Hidden = 64, Intermediate = 176, Layers = 3, Heads = 4, KvHeads = 2, Vocab = 512, MaxPositions = 128,
    };

    private string Generate(LlamaOptions options, string name)
    {
        var path = _dir.Combine(name);
        var result = LlamaFixture.Generate(path, options);
        Assert.False(result.Reused);
        return path;
    }

    private static float[] Floats(TensorInfo t) => t.DType switch
    {
        DType.F32 => MemoryMarshal.Cast<byte, float>(TensorData.ReadAll(t)).ToArray(),
        DType.F16 => MemoryMarshal.Cast<byte, Half>(TensorData.ReadAll(t)).ToArray().Select(h => (float)h).ToArray(),
        DType.BF16 => MemoryMarshal.Cast<byte, ushort>(TensorData.ReadAll(t)).ToArray().Select(b => BitConverter.UInt32BitsToSingle((uint)b << 16)).ToArray(),
        _ => throw new InvalidOperationException(),
    };

    [Fact]
    public void Checkpoint_holds_exactly_the_tensors_core_derives_from_its_config()
    {
        var path = Generate(Small, "llama");
        var checkpoint = Checkpoint.Open(path);
        Assert.Same(ArchitectureCatalog.Llama, checkpoint.Architecture);
        var config = checkpoint.Config!;
        Assert.Equal("LlamaForCausalLM", config.Architecture);
        Assert.Equal((64, 3, 4, 2, 176, 512, 128), (config.HiddenSize, config.NumHiddenLayers, config.NumAttentionHeads, config.NumKeyValueHeads, config.IntermediateSize, config.VocabSize, config.MaxPositionEmbeddings));
        Assert.Equal((1e-5, 10000.0, false, DType.F32, "silu"), (config.RmsNormEps, config.RopeTheta, config.TieWordEmbeddingsValue, config.TorchDType, config.HiddenAct));
        Assert.Equal(1, config.BosTokenId);
        Assert.Equal([2], config.EosTokenIds);

        var expected = ArchitectureCatalog.Llama.TensorsFromConfig(config);
        Assert.Equal(expected.Select(t => t.Name).Order(), checkpoint.Tensors.Select(t => t.Name).Order());
        foreach (var t in expected) Assert.Equal(t.Shape, checkpoint[t.Name].Shape);
        Assert.NotNull(checkpoint.Find("lm_head.weight"));
        Assert.DoesNotContain(checkpoint.Tensors, t => t.Name.EndsWith(".bias"));
        // k/v projections are GQA-sized.
        Assert.Equal([32L, 64], checkpoint["model.layers.0.self_attn.k_proj.weight"].Shape);
        Assert.Equal("pt", checkpoint.Metadata["format"]);
        Assert.True(File.Exists(Path.Combine(path, "generation_config.json")));
    }

    [Fact]
    public void Values_follow_the_requested_distributions()
    {
        var checkpoint = Checkpoint.Open(Generate(Small with { Std = 0.05, QkvBias = true }, "stats"));
        var weight = Floats(checkpoint["model.embed_tokens.weight"]);
        var (mean, std) = Moments(weight);
        Assert.InRange(mean, -0.002, 0.002);
        Assert.InRange(std, 0.049, 0.051);
        // Roughly 68 % within one standard deviation: normal, not uniform (58 %).
        double within = weight.Count(v => Math.Abs(v) < 0.05) / (double)weight.Length;
        Assert.InRange(within, 0.66, 0.70);

        var norms = checkpoint.Tensors.Where(t => t.Name.EndsWith("norm.weight")).SelectMany(Floats).ToArray();
        var (normMean, normStd) = Moments(norms);
        Assert.InRange(normMean, 0.99, 1.01);
        Assert.InRange(normStd, 0.04, 0.06);

        var biases = checkpoint.Tensors.Where(t => t.Name.EndsWith(".bias")).ToList();
        Assert.Equal(3 * 4, biases.Count); // llama's attention_bias covers q, k, v and o
        var (biasMean, biasStd) = Moments(biases.SelectMany(Floats).ToArray());
        Assert.InRange(biasMean, -0.01, 0.01);
        Assert.InRange(biasStd, 0.04, 0.06);
    }

    [Fact]
    public void One_shard_and_many_shards_hold_identical_tensors()
    {
        var single = Checkpoint.Open(Generate(Small, "single"));
        var shardedPath = Generate(Small with { MaxShardSize = 100_000 }, "sharded");
        var sharded = Checkpoint.Open(shardedPath);
        Assert.Equal(CheckpointFormat.Safetensors, single.Format);
        Assert.Equal(CheckpointFormat.ShardedSafetensors, sharded.Format);
        Assert.Empty(sharded.Warnings);
        Assert.Equal(single.ByteLength, sharded.DeclaredTotalSize);
        Assert.True(sharded.Files.Count > 2);
        int n = sharded.Files.Count;
        var files = sharded.Files.Order(StringComparer.Ordinal).ToList();
        Assert.Equal(Enumerable.Range(1, n).Select(i => $"model-{i:D5}-of-{n:D5}.safetensors"), files.Select(Path.GetFileName));
        foreach (var file in sharded.Files)
        {
            long data = sharded.Tensors.Where(t => t.File == file).Sum(t => t.ByteLength);
            Assert.True(data <= 100_000 || sharded.Tensors.Count(t => t.File == file) == 1, $"{file} holds {data} bytes");
        }
        // Greedy in forward order: the shards' tensors follow each other in the model's order.
        var order = sharded.Tensors.Select(t => files.IndexOf(t.File)).ToList();
        Assert.Equal(order.Order(), order);
        foreach (var t in single.Tensors)
            Assert.Equal(TensorData.ReadAll(t), TensorData.ReadAll(sharded[t.Name]));

        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(shardedPath, "model.safetensors.index.json")))!;
        var keys = index["weight_map"]!.AsObject().Select(p => p.Key).ToList();
        Assert.Equal(keys.Order(StringComparer.Ordinal), keys);
    }

    [Fact]
    public void A_tensor_depends_only_on_seed_and_name()
    {
        var a = Checkpoint.Open(Generate(Small, "a"));
        var deeper = Checkpoint.Open(Generate(Small with { Layers = 4, Vocab = 600 }, "deeper"));
        var otherSeed = Checkpoint.Open(Generate(Small with { Seed = 2 }, "seed2"));
        const string name = "model.layers.1.mlp.down_proj.weight";
        Assert.Equal(TensorData.ReadAll(a[name]), TensorData.ReadAll(deeper[name]));
        Assert.NotEqual(TensorData.ReadAll(a[name]), TensorData.ReadAll(otherSeed[name]));
        // Different tensors of equal shape differ.
        Assert.NotEqual(TensorData.ReadAll(a["model.layers.0.mlp.down_proj.weight"]), TensorData.ReadAll(a[name]));
    }

    [Fact]
    public void Chunk_boundaries_do_not_change_values()
    {
        ulong key = TensorValues.Key(7, "x");
        var whole = new float[1001];
        TensorValues.Fill(key, 0, whole, 0, 1);
        foreach (int cut in new[] { 1, 2, 333, 500, 999 })
        {
            var head = new float[cut];
            var tail = new float[whole.Length - cut];
            TensorValues.Fill(key, 0, head, 0, 1);
            TensorValues.Fill(key, cut, tail, 0, 1);
            Assert.Equal(whole, head.Concat(tail).ToArray());
        }
        for (int i = 0; i < whole.Length; i += 97) Assert.Equal(whole[i], TensorValues.StandardNormal(key, i));
    }

    [Theory]
    [InlineData("F16")]
    [InlineData("BF16")]
    public void Sixteen_bit_checkpoints_hold_the_rounded_float32_values(string dtypeName)
    {
        var dtype = DTypes.Parse(dtypeName);
        var f32 = Checkpoint.Open(Generate(Small, "f32"));
        var half = Checkpoint.Open(Generate(Small with { DType = dtype }, dtypeName));
        Assert.Equal(dtype, half.Config!.TorchDType);
        Assert.Equal(f32.ByteLength / 2, half.ByteLength);
        const string name = "model.layers.2.self_attn.q_proj.weight";
        var exact = Floats(f32[name]);
        var rounded = Floats(half[name]);
        for (int i = 0; i < exact.Length; i++)
        {
            float expected = dtype == DType.F16 ? (float)(Half)exact[i] : BitConverter.UInt32BitsToSingle((uint)TensorValues.ToBFloat16(exact[i]) << 16);
            Assert.Equal(expected, rounded[i]);
            Assert.True(Math.Abs(exact[i] - rounded[i]) <= Math.Abs(exact[i]) / (dtype == DType.F16 ? 1024 : 128) + 1e-7);
        }
    }

    [Fact]
    public void Bfloat16_rounds_to_nearest_even()
    {
        Assert.Equal(0x3F80, TensorValues.ToBFloat16(1f));
        Assert.Equal(0x3F80, TensorValues.ToBFloat16(BitConverter.UInt32BitsToSingle(0x3F808000))); // tie, even stays
        Assert.Equal(0x3F82, TensorValues.ToBFloat16(BitConverter.UInt32BitsToSingle(0x3F818000))); // tie, odd rounds up
        Assert.Equal(0x3F81, TensorValues.ToBFloat16(BitConverter.UInt32BitsToSingle(0x3F808001)));
        Assert.True(float.IsNaN(BitConverter.UInt32BitsToSingle((uint)TensorValues.ToBFloat16(float.NaN) << 16)));
    }

    [Fact]
    public void Qwen2_has_qkv_biases_without_o_bias_and_its_own_config_values()
    {
        var checkpoint = Checkpoint.Open(Generate(Small with { ModelType = "qwen2", Tied = true }, "qwen2"));
        Assert.Same(ArchitectureCatalog.Qwen2, checkpoint.Architecture);
        var config = checkpoint.Config!;
        Assert.Equal("Qwen2ForCausalLM", config.Architecture);
        Assert.Equal((1e-6, 1_000_000.0, true), (config.RmsNormEps, config.RopeTheta, config.TieWordEmbeddingsValue));
        Assert.NotNull(checkpoint.Find("model.layers.0.self_attn.q_proj.bias"));
        Assert.Equal([32L], checkpoint["model.layers.0.self_attn.v_proj.bias"].Shape);
        Assert.Null(checkpoint.Find("model.layers.0.self_attn.o_proj.bias"));
        Assert.Null(checkpoint.Find("lm_head.weight"));
        Assert.Equal(ArchitectureCatalog.Qwen2.TensorsFromConfig(config).Count, checkpoint.Tensors.Count);
    }

    [Fact]
    public void Mistral_config_is_complete()
    {
        var checkpoint = Checkpoint.Open(Generate(Small with { ModelType = "mistral" }, "mistral"));
        Assert.Same(ArchitectureCatalog.Mistral, checkpoint.Architecture);
        Assert.Equal("MistralForCausalLM", checkpoint.Config!.Architecture);
        Assert.True(checkpoint.Config.Raw.ContainsKey("sliding_window"));
    }

    [Fact]
    public void Impossible_options_are_refused_with_typed_errors()
    {
        Assert.Equal(BigModelErrorCode.InvalidArgument, Assert.Throws<BigModelException>(() => LlamaFixture.Generate(_dir.Combine("x"), Small with { Heads = 5 })).Code);
        Assert.Equal(BigModelErrorCode.InvalidArgument, Assert.Throws<BigModelException>(() => LlamaFixture.Generate(_dir.Combine("x"), Small with { KvHeads = 3 })).Code);
        Assert.Equal(BigModelErrorCode.InvalidArgument, Assert.Throws<BigModelException>(() => LlamaFixture.Generate(_dir.Combine("x"), Small with { ModelType = "mistral", QkvBias = true })).Code);
        Assert.Equal(BigModelErrorCode.InvalidArgument, Assert.Throws<BigModelException>(() => LlamaFixture.Generate(_dir.Combine("x"), Small with { ModelType = "gpt2" })).Code);
        Assert.Equal(BigModelErrorCode.InvalidArgument, Assert.Throws<BigModelException>(() => LlamaFixture.Generate(_dir.Combine("x"), Small with { DType = DType.I8 })).Code);
        Assert.False(Directory.Exists(_dir.Combine("x")));
    }

    [Fact]
    public void Generation_streams_without_allocating_in_proportion_to_the_model()
    {
        var options = new LlamaOptions { Hidden = 512, Intermediate = 1408, Layers = 8, Heads = 8, KvHeads = 8, Vocab = 8000, MaxShardSize = 60_000_000 };
        long before = GC.GetAllocatedBytesForCurrentThread();
        var result = LlamaFixture.Generate(_dir.Combine("streamed"), options);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(result.BytesWritten > 130_000_000);
        // Two 4 MiB chunk buffers plus bookkeeping, against 136 MB of weights.
        Assert.True(allocated < 24 << 20, $"{allocated:N0} bytes allocated to write {result.BytesWritten:N0}");
    }

    [Fact]
    public void Default_options_are_the_benchmark_model()
    {
        var tensors = LlamaFixture.Tensors(new LlamaOptions());
        Assert.Equal(296_784_896, tensors.Sum(t => t.ElementCount));
        Assert.Equal(1_187_139_584, tensors.Sum(t => t.ByteLength));
        Assert.Equal("model.embed_tokens.weight", tensors[0].Name);
        Assert.Equal("lm_head.weight", tensors[^1].Name);
    }

    private static (double Mean, double Std) Moments(float[] values)
    {
        double mean = values.Average(v => (double)v);
        double variance = values.Sum(v => (v - mean) * (v - mean)) / values.Length;
        return (mean, Math.Sqrt(variance));
    }
}
