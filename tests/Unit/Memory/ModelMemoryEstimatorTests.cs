using System.Text;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Memory;
using BigModel.Tests.Support;

namespace BigModel.Tests.Memory;

public sealed class ModelMemoryEstimatorTests
{
    private const string BertBaseCased = """
        {"architectures":["BertModel"],"model_type":"bert","vocab_size":28996,"hidden_size":768,"num_hidden_layers":12,
         "num_attention_heads":12,"intermediate_size":3072,"max_position_embeddings":512,"type_vocab_size":2,
         "hidden_act":"gelu","layer_norm_eps":1e-12}
        """;

    private const string Llama2_7B = """
        {"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":4096,"intermediate_size":11008,
         "num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":32,"vocab_size":32000,
         "max_position_embeddings":4096,"rms_norm_eps":1e-5,"tie_word_embeddings":false,"torch_dtype":"float16"}
        """;

    private const string Mistral7B = """
        {"architectures":["MistralForCausalLM"],"model_type":"mistral","hidden_size":4096,"intermediate_size":14336,
         "num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":32000,
         "max_position_embeddings":32768,"rms_norm_eps":1e-5,"tie_word_embeddings":false,"torch_dtype":"bfloat16"}
        """;

    private const string Qwen2_0_5B = """
        {"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,
         "num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"vocab_size":151936,
         "max_position_embeddings":32768,"rms_norm_eps":1e-6,"tie_word_embeddings":true,"torch_dtype":"bfloat16"}
        """;

    private const string Gpt2 = """
        {"architectures":["GPT2LMHeadModel"],"model_type":"gpt2","n_embd":768,"n_layer":12,"n_head":12,
         "n_positions":1024,"n_ctx":1024,"vocab_size":50257}
        """;

    private static ModelConfig Config(string json) => ModelConfig.Parse(Encoding.UTF8.GetBytes(json));

    [Fact]
    public void Sizes_bert_base_cased_as_accelerate_estimate_memory_does()
    {
        var rows = ModelMemoryEstimator.Estimate(Config(BertBaseCased));
        var f32 = rows.Single(r => r.DType == MemoryDType.Float32);
        Assert.Equal(108_310_272, f32.ParameterCount);
        Assert.Equal(433_241_088, f32.TotalBytes);
        Assert.Equal(90_660_864, f32.LargestLayerBytes);
        Assert.Equal("embeddings", f32.LargestLayer);
        Assert.Equal(4 * 433_241_088L, f32.TrainingAdamBytes);
        var f16 = rows.Single(r => r.DType == MemoryDType.Float16);
        Assert.Equal(433_241_088 / 2, f16.TotalBytes);
        Assert.Equal(2 * 433_241_088L, f16.TrainingAdamBytes);
        var int4 = rows.Single(r => r.DType == MemoryDType.Int4);
        Assert.Equal(433_241_088 / 8, int4.TotalBytes);
        Assert.Null(int4.TrainingAdamBytes);
        Assert.Equal(0, f32.KvCacheBytes);
        Assert.Equal(["float32", "float16", "int8", "int4"], rows.Select(r => r.DType.Name));
    }

    [Theory]
    [InlineData(Llama2_7B, 6_738_415_616L)]
    [InlineData(Mistral7B, 7_241_732_096L)]
    [InlineData(Qwen2_0_5B, 494_032_768L)]
    [InlineData(Gpt2, 124_439_808L)]
    public void Counts_the_published_parameter_numbers_from_config_alone(string json, long parameters)
    {
        Assert.Equal(parameters, ModelMemoryEstimator.Estimate(Config(json))[0].ParameterCount);
    }

    [Fact]
    public void Picks_a_decoder_layer_as_the_largest_block_when_it_outweighs_the_embeddings()
    {
        var f16 = ModelMemoryEstimator.Estimate(Config(Llama2_7B), new MemoryEstimateOptions { DTypes = [MemoryDType.Float16] }).Single();
        // 4 × 4096² attention + 3 × 4096 × 11008 MLP + 2 norms, in float16.
        Assert.Equal((4L * 4096 * 4096 + 3L * 4096 * 11008 + 2 * 4096) * 2, f16.LargestLayerBytes);
        Assert.Equal("model.layers.0", f16.LargestLayer);
    }

    [Fact]
    public void Counts_the_kv_cache_for_grouped_query_attention()
    {
        var row = ModelMemoryEstimator.Estimate(Config(Mistral7B), new MemoryEstimateOptions { DTypes = [MemoryDType.BFloat16], ContextLength = 4096, BatchSize = 2 }).Single();
        // 2 × 32 layers × 2 sequences × 4096 tokens × 8 kv heads × 128 dims × 2 bytes.
        Assert.Equal(2L * 32 * 2 * 4096 * 8 * 128 * 2, row.KvCacheBytes);
        Assert.True(row.ActivationBytes > 0);
        Assert.Equal(row.TotalBytes + row.KvCacheBytes + row.ActivationBytes, row.InferenceBytes);
    }

    [Fact]
    public void Defaults_the_context_to_the_models_maximum()
    {
        var row = ModelMemoryEstimator.Estimate(Config(Llama2_7B), new MemoryEstimateOptions { DTypes = [MemoryDType.Float16] }).Single();
        Assert.Equal(4096, row.ContextLength);
        Assert.Equal(2L * 32 * 4096 * 32 * 128 * 2, row.KvCacheBytes);
    }

    [SkippableModelFact]
    public void Stories260K_config_alone_matches_its_real_checkpoint()
    {
        var checkpoint = Checkpoint.Open(SharedModels.Stories260K);
        var fromCheckpoint = ModelMemoryEstimator.Estimate(checkpoint);
        var fromConfig = ModelMemoryEstimator.Estimate(checkpoint.Config!);
        Assert.Equal(fromCheckpoint.Select(r => (r.ParameterCount, r.TotalBytes, r.LargestLayer, r.LargestLayerBytes, r.KvCacheBytes)),
            fromConfig.Select(r => (r.ParameterCount, r.TotalBytes, r.LargestLayer, r.LargestLayerBytes, r.KvCacheBytes)));
        Assert.Equal(checkpoint.ParameterCount, fromConfig[0].ParameterCount);
    }

    [Fact]
    public void Without_a_config_says_what_is_not_counted()
    {
        using var dir = new TempDirectory();
        var path = dir.Combine("model.safetensors");
        var layout = SafetensorsLayout.Create([new TensorSpec("w", DType.F32, [2])]);
        using (var w = new SafetensorsWriter(path, layout)) { w.Write(new byte[8]); w.Complete(); }
        var row = ModelMemoryEstimator.Estimate(Checkpoint.Open(path))[0];
        Assert.Equal(8, row.TotalBytes);
        Assert.Equal(0, row.KvCacheBytes);
        Assert.Contains(row.Notes, n => n.Contains("config.json"));
    }

    [Fact]
    public void Rejects_unknown_precisions_with_a_typed_error()
    {
        Assert.Equal(BigModel.Errors.BigModelErrorCode.InvalidDType,
            Assert.Throws<BigModel.Errors.BigModelException>(() => MemoryDType.Parse("float7")).Code);
        Assert.Equal(MemoryDType.BFloat16, MemoryDType.Parse("BF16"));
    }

    [Fact]
    public void A_budget_check_names_every_figure_and_passes_at_the_limit()
    {
        var row = ModelMemoryEstimator.Estimate(Config("""{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":64,"intermediate_size":172,"num_hidden_layers":5,"num_attention_heads":8,"num_key_value_heads":4,"vocab_size":512,"max_position_embeddings":512}"""),
            new MemoryEstimateOptions { DTypes = [MemoryDType.Float32] })[0];
        row.ThrowIfOver(row.InferenceBytes);
        var e = Assert.Throws<BigModelException>(() => row.ThrowIfOver(row.InferenceBytes - 1, "tight"));
        Assert.Equal(BigModelErrorCode.MemoryBudgetExceeded, e.Code);
        Assert.Contains("over the budget of tight", e.Message, StringComparison.Ordinal);
        Assert.Contains(row.TotalBytes.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("config.json", true)]
    [InlineData("llama-7b.json", true)]
    [InlineData("model.safetensors.index.json", false)]
    [InlineData("model.safetensors", false)]
    public void One_rule_tells_a_config_from_a_checkpoint(string name, bool isConfig)
    {
        using var dir = new TempDirectory();
        var path = dir.Combine(name);
        File.WriteAllText(path, "{}");
        Assert.Equal(isConfig, ModelConfig.IsConfigFile(path));
        Assert.False(ModelConfig.IsConfigFile(dir.Combine("missing.json")));
    }
}
