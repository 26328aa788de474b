using System.Text.Json.Nodes;
using BigModel.Checkpoints;
using BigModel.Fixtures.Synthetic;
using BigModel.Inference;
using BigModel.Tests.Inference.Support;
using BigModel.Tests.Support;

namespace BigModel.Tests.Inference;

/// <summary>Generated Llama-family checkpoints (random weights) against the numpy reference.</summary>
[Collection(TorchCollection.Name)]
public sealed class RandomLlamaTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private static readonly InferenceOptions Base = new() { Threads = 1 };

    public void Dispose() => _dir.Dispose();

    private static readonly Dictionary<string, string> HalfDisk = new()
    {
        ["model.embed_tokens"] = "disk",
        ["model.layers.0"] = "cpu",
        ["model.layers.1"] = "disk",
        ["model.layers.2"] = "disk",
        ["model.norm"] = "cpu",
        ["lm_head"] = "disk",
    };

    /// <summary>Greedy ids, full-sequence logits and KV-cache decode logits, under three placements, against the reference.</summary>
    private void MatchesReference(string folder, double tolerance = 1e-4, InferenceOptions? options = null)
    {
        int[] prompt = [1, 5, 9, 17];
        var reference = PythonReference.RunJson("llama_reference.py", folder, "--ids", string.Join(",", prompt), "--generate", "8");
        var ids = reference["generated"]!.AsArray().Select(v => v!.GetValue<int>()).ToArray();
        var logits = PythonReference.Matrix(reference["logits"]!);
        foreach (var placement in new[] { null, HalfDisk, new Dictionary<string, string> { [""] = "disk" } })
        {
            using var session = InferenceSession.Open(folder, placement, options ?? Base);
            var result = session.Generate(prompt, new GenerationOptions { MaxNewTokens = 8, StopTokenIds = [], ReturnScores = true });
            Assert.Equal(ids, result.GeneratedIds);
            // float32 decoding on the kernel runs whole layers natively; the scores below check that path too.
            if (session.LinearKernel == LinearKernel.Native && (options ?? Base).DType is null or DType.F32)
                Assert.True(session.NativeLayerSteps > 0, "the decode steps did not run the native one-token layers");
            LogitAssert.Close(logits, session.Logits([.. prompt, .. ids]), tolerance);
            LogitAssert.Close(logits.Skip(prompt.Length - 1).Take(8).ToArray(), result.Scores!.ToArray(), tolerance);
        }
    }

    [InferenceFact(Needs.PythonNumpy)]
    public void Qwen2_with_qkv_biases_and_an_untied_head_matches_the_reference()
    {
        var folder = RandomCheckpoints.WriteLlama(_dir.Combine("qwen2"), new LlamaShape { ModelType = "qwen2", Heads = 4, KvHeads = 2 }, seed: 1);
        using (var s = InferenceSession.Open(folder, null, Base))
            Assert.Contains(s.LoadReport.Blocks, b => b.Name == "model.layers.0");
        Assert.NotNull(Checkpoint.Open(folder).Find("model.layers.0.self_attn.q_proj.bias"));
        Assert.Null(Checkpoint.Open(folder).Find("model.layers.0.self_attn.o_proj.bias"));
        MatchesReference(folder);
    }

    [InferenceFact(Needs.PythonNumpy)]
    public void Sharded_qwen2_from_the_fixture_generator_matches_the_reference()
    {
        var folder = _dir.Combine("qwen2-sharded");
        LlamaFixture.Generate(folder, new LlamaOptions
        {
            ModelType = "qwen2", Hidden = 64, Intermediate = 176, Layers = 3, Heads = 4, KvHeads = 2, Vocab = 512, MaxShardSize = 100_000, Std = 0.1,
        });
        var checkpoint = Checkpoint.Open(folder);
        Assert.Equal(CheckpointFormat.ShardedSafetensors, checkpoint.Format);
        Assert.True(checkpoint.Files.Count > 3);
        MatchesReference(folder);
    }

    [InferenceFact(Needs.PythonNumpy)]
    public void Llama_with_attention_bias_including_o_proj_matches_the_reference()
    {
        var folder = RandomCheckpoints.WriteLlama(_dir.Combine("llama-bias"), new LlamaShape { AttentionBias = true, Heads = 4, KvHeads = 4 }, seed: 2);
        Assert.NotNull(Checkpoint.Open(folder).Find("model.layers.0.self_attn.o_proj.bias"));
        MatchesReference(folder);
    }

    [InferenceFact(Needs.PythonNumpy)]
    public void Tied_head_with_single_kv_head_matches_the_reference()
    {
        var folder = RandomCheckpoints.WriteLlama(_dir.Combine("tied"), new LlamaShape { Tied = true, Heads = 4, KvHeads = 1, Hidden = 48 }, seed: 3);
        Assert.Null(Checkpoint.Open(folder).Find("lm_head.weight"));
        MatchesReference(folder);
    }

    [InferenceFact(Needs.PythonNumpy)]
    public void Mistral_sliding_window_shorter_than_the_sequence_matches_the_reference()
    {
        var folder = RandomCheckpoints.WriteLlama(_dir.Combine("mistral"), new LlamaShape { ModelType = "mistral", SlidingWindow = 5 }, seed: 4);
        MatchesReference(folder);
    }

    [InferenceFact(Needs.PythonNumpy)]
    public void Llama3_rope_scaling_and_a_large_theta_match_the_reference()
    {
        var scaling = new JsonObject
        {
            ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 16,
        };
        var folder = RandomCheckpoints.WriteLlama(_dir.Combine("llama3"), new LlamaShape { RopeScaling = scaling, RopeTheta = 500000 }, seed: 5);
        MatchesReference(folder);
    }

    [InferenceFact(Needs.PythonNumpy)]
    public void Half_precision_weights_convert_on_load_and_match_the_reference()
    {
        // F16 and BF16 values are exact in float32, so computing in float32 matches the float64 reference as closely as F32 weights do.
        var f16 = RandomCheckpoints.WriteLlama(_dir.Combine("f16"), new LlamaShape { DType = DType.F16 }, seed: 6);
        MatchesReference(f16, options: Base with { DType = DType.F32 });
        var bf16 = RandomCheckpoints.WriteLlama(_dir.Combine("bf16"), new LlamaShape { DType = DType.BF16 }, seed: 7);
        MatchesReference(bf16, options: Base with { DType = DType.F32 });
    }

    [InferenceFact(Needs.PythonNumpy)]
    public void Float64_conversion_on_load_matches_the_reference()
    {
        // Weights and activations in float64; only the rotary tables (float32, as transformers computes them) and
        // the returned logits are float32.
        var folder = RandomCheckpoints.WriteLlama(_dir.Combine("f64"), new LlamaShape(), seed: 8);
        MatchesReference(folder, tolerance: 1e-5, options: Base with { DType = DType.F64 });
    }

    [Fact]
    public void Computing_in_bfloat16_stays_close_to_float32()
    {
        var folder = RandomCheckpoints.WriteLlama(_dir.Combine("bf16compute"), new LlamaShape(), seed: 9);
        float[][] exact, rounded;
        using (var s = InferenceSession.Open(folder, null, Base)) exact = s.Logits([1, 2, 3, 4]);
        using (var s = InferenceSession.Open(folder, new Dictionary<string, string> { [""] = "disk" }, Base with { DType = DType.BF16 }))
        {
            Assert.Equal(0, s.LoadReport.MappedBytes);
            Assert.True(s.LoadReport.StreamedBytes > 0, "converted disk weights cannot be computed with in place");
            rounded = s.Logits([1, 2, 3, 4]);
        }
        // bfloat16 keeps 8 significant bits, so each rounding moves a value by up to 0.4 %; through the layers the
        // logits (of size 1 to 3 here) move by about 0.05 on average at the worst position, and by up to 0.13 in runs
        // where libtorch's bfloat16 reductions split differently (their order follows its thread count, which other
        // sessions in the process set). The average stays far smaller.
        LogitAssert.Close(exact.Select(r => r.Select(v => (double)v).ToArray()).ToArray(), rounded, 0.25);
        double mean = exact.SelectMany((row, r) => row.Select((v, c) => Math.Abs(v - rounded[r][c]))).Average();
        Assert.True(mean <= 0.03, $"mean difference {mean:E2} between bfloat16 and float32 logits");
    }

    [InferenceTheory(Needs.DecodeKernel)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void Half_precision_decoding_through_the_native_layers_is_as_exact_as_the_tensor_path(DType type)
    {
        foreach (int seed in new[] { 11, 12, 13 })
        {
            // Grouped heads, biases and a sliding window shorter than the run, all computed in the 16-bit type.
            var folder = RandomCheckpoints.WriteLlama(_dir.Combine($"native-{type}-{seed}"), new LlamaShape
            {
                ModelType = "qwen2", Heads = 4, KvHeads = 2, SlidingWindow = 6, DType = type,
            }, seed: seed);
            var (tensorError, _) = DistanceFromFloat32(folder, LinearKernel.LibTorch);
            var (nativeError, layers) = DistanceFromFloat32(folder, LinearKernel.Native);
            Assert.True(layers > 0, "the native one-token layers did not run");
            // The same roundings at the same places; only summation order differs, which flips a last bit now and
            // then, so neither path is further from exact arithmetic than rounding noise allows. Measured here:
            // float16 0.005–0.018 on both paths, bfloat16 0.03–0.09 (the prompt's prefill runs on libtorch, whose
            // reduction order follows the thread count other sessions set, so the distances vary from run to run).
            double slack = type == DType.F16 ? 0.003 : 0.03;
            Assert.True(nativeError <= 2 * tensorError + slack, $"seed {seed}: native {nativeError:E2} vs tensor path {tensorError:E2} away from float32");
        }
    }

    /// <summary>
    /// The largest difference between the decode scores computed in the checkpoint's 16-bit type with
    /// <paramref name="kernel"/> and float32 logits (exact for these weights) on the same tokens.
    /// </summary>
    private static (double Error, long NativeLayers) DistanceFromFloat32(string folder, LinearKernel kernel)
    {
        int[] prompt = [1, 5, 9];
        GenerationResult result;
        long layers;
        using (var session = InferenceSession.Open(folder, null, Base with { LinearKernel = kernel }))
        {
            result = session.Generate(prompt, new GenerationOptions { MaxNewTokens = 12, StopTokenIds = [], ReturnScores = true });
            layers = session.NativeLayerSteps;
        }
        float[][] exact;
        using (var session = InferenceSession.Open(folder, null, Base with { DType = DType.F32 }))
            exact = session.Logits([.. prompt, .. result.GeneratedIds]).Skip(prompt.Length - 1).Take(12).ToArray();
        double error = result.Scores!.Select((row, r) => row.Select((v, c) => Math.Abs((double)v - exact[r][c])).Max()).Max();
        return (error, layers);
    }

    [InferenceFact(Needs.DecodeKernel)]
    public void Decoding_past_the_first_rotary_table_matches_a_full_forward_pass()
    {
        // 300 positions: the rotary tables (256 positions at first) grow during the run, under the native layers.
        var folder = RandomCheckpoints.WriteLlama(_dir.Combine("long"), new LlamaShape { Heads = 4, KvHeads = 2 }, seed: 14);
        using var session = InferenceSession.Open(folder, null, Base);
        int[] prompt = [1, 2, 3];
        var result = session.Generate(prompt, new GenerationOptions { MaxNewTokens = 297, StopTokenIds = [], ReturnScores = true });
        Assert.True(session.NativeLayerSteps > 0);
        var full = session.Logits([.. prompt, .. result.GeneratedIds]).Skip(prompt.Length - 1).Take(297).ToArray();
        LogitAssert.Close(full.Select(r => r.Select(v => (double)v).ToArray()).ToArray(), result.Scores!.ToArray(), 1e-3);
    }

    [InferenceTheory(Needs.DecodeKernel)]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    public void Two_cores_warming_ahead_decode_as_one_core_does(DType type)
    {
        // With two threads the other core reads upcoming weights between kernel calls, and between layers the next
        // layer's q, k and v when that layer is resident; the results must not move.
        var folder = RandomCheckpoints.WriteLlama(_dir.Combine("warm-" + type), new LlamaShape { Layers = 4, DType = type }, seed: 21);
        int[] prompt = [1, 4, 7];
        var generation = new GenerationOptions { MaxNewTokens = 10, StopTokenIds = [], ReturnScores = true };
        var lastOnDisk = new Dictionary<string, string> { ["model.layers.3"] = "disk", [""] = "cpu" };
        foreach (var placement in new[] { null, lastOnDisk })
        {
            using var one = InferenceSession.Open(folder, placement, Base);
            using var two = InferenceSession.Open(folder, placement, Base with { Threads = 2 });
            var expected = one.Generate(prompt, generation);
            var actual = two.Generate(prompt, generation);
            Assert.Equal(expected.GeneratedIds, actual.GeneratedIds);
            LogitAssert.Close(expected.Scores!.Select(r => r.Select(v => (double)v).ToArray()).ToArray(), actual.Scores!.ToArray(), 1e-5);
            Assert.True(two.NativeLayerSteps > 0);
            Assert.Equal(0, one.NextLayerWarms);
            // Nine decode steps see layers 0-2 resident (layer 3 only in the second placement's), each warmed by its
            // predecessor once it has been seen: from the second step on.
            long boundaries = placement is null ? 3 : 2;
            Assert.Equal(boundaries * (generation.MaxNewTokens - 2), two.NextLayerWarms);
        }
    }

    [Fact]
    public void Misaligned_tensors_fall_back_to_copies_and_compute_the_same()
    {
        var folder = RandomCheckpoints.WriteLlama(_dir.Combine("aligned"), new LlamaShape(), seed: 10);
        var shifted = _dir.Combine("shifted");
        Directory.CreateDirectory(shifted);
        File.Copy(Path.Combine(folder, "config.json"), Path.Combine(shifted, "config.json"));
        ShiftedCopy.Write(Path.Combine(folder, "model.safetensors"), Path.Combine(shifted, "model.safetensors"));
        Assert.All(Checkpoint.Open(shifted).Tensors.Where(t => t.DType == DType.F32), t => Assert.NotEqual(0, t.DataOffset % 4));

        var allDisk = new Dictionary<string, string> { [""] = "disk" };
        float[][] expected;
        using (var s = InferenceSession.Open(folder, allDisk, Base))
        {
            Assert.Equal(0, s.LoadReport.StreamedBytes);
            expected = s.Logits([3, 1, 4, 1, 5]);
        }
        using (var s = InferenceSession.Open(shifted, allDisk, Base))
        {
            Assert.Equal(0, s.LoadReport.MappedBytes);
            Assert.True(s.LoadReport.StreamedBytes > 0);
            Assert.Equal(expected, s.Logits([3, 1, 4, 1, 5]));
        }
    }
}

/// <summary>Rewrites a safetensors file with a one-byte tensor first, so every other tensor starts at an odd offset.</summary>
internal static class ShiftedCopy
{
    public static void Write(string source, string destination)
    {
        var header = SafetensorsHeader.Read(source);
        var entries = new JsonObject { ["__metadata__"] = new JsonObject { ["format"] = "pt" }, ["aaa_pad"] = new JsonObject
        {
            ["dtype"] = "U8", ["shape"] = new JsonArray(1), ["data_offsets"] = new JsonArray(0, 1),
        } };
        long offset = 1;
        var ordered = header.Tensors.OrderBy(t => t.DataOffset).ToList();
        foreach (var t in ordered)
        {
            entries[t.Name] = new JsonObject
            {
                ["dtype"] = t.DType.ToString(), ["shape"] = new JsonArray(t.Shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + t.ByteLength),
            };
            offset += t.ByteLength;
        }
        var json = System.Text.Encoding.UTF8.GetBytes(entries.ToJsonString());
        int padded = (json.Length + 7) / 8 * 8;
        using var output = File.Create(destination);
        output.Write(BitConverter.GetBytes((ulong)padded));
        output.Write(json);
        for (int i = json.Length; i < padded; i++) output.WriteByte((byte)' ');
        output.WriteByte(0x5A);
        foreach (var t in ordered) output.Write(TensorData.ReadAll(t));
    }
}
