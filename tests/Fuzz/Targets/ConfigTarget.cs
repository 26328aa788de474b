using System.Text;
using BigModel.Architectures;
using BigModel.Memory;

namespace BigModel.Fuzz.Targets;

/// <summary>config.json: parsing, family detection, the tensors a config implies, and the memory estimate.</summary>
public sealed class ConfigTarget : IFuzzTarget
{
    public string Name => "config";

    public IReadOnlyList<byte[]> Seeds(SeedSources sources)
    {
        var seeds = new List<string>
        {
            """{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":64,"intermediate_size":172,"num_hidden_layers":5,"num_attention_heads":8,"num_key_value_heads":4,"vocab_size":512,"max_position_embeddings":512,"rms_norm_eps":1e-05,"rope_theta":10000.0,"tie_word_embeddings":true,"torch_dtype":"float32","eos_token_id":2}""",
            """{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"vocab_size":151936,"max_position_embeddings":32768,"tie_word_embeddings":true,"torch_dtype":"bfloat16","eos_token_id":[151643,151645]}""",
            """{"architectures":["BertModel"],"model_type":"bert","vocab_size":30522,"hidden_size":384,"num_hidden_layers":6,"num_attention_heads":12,"intermediate_size":1536,"max_position_embeddings":512,"type_vocab_size":2,"layer_norm_eps":1e-12}""",
            """{"architectures":["GPT2LMHeadModel"],"model_type":"gpt2","n_embd":768,"n_layer":12,"n_head":12,"n_positions":1024,"vocab_size":50257}""",
            """{"architectures":["MistralForCausalLM"],"model_type":"mistral","hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"head_dim":128,"vocab_size":32000,"rope_parameters":{"rope_theta":1000000.0}}""",
        };
        var list = seeds.Select(Encoding.UTF8.GetBytes).ToList();
        foreach (var folder in new[] { sources.Stories260K, sources.MiniLM })
            if (folder is not null && File.Exists(Path.Combine(folder, "config.json")))
                list.Add(File.ReadAllBytes(Path.Combine(folder, "config.json")));
        return list;
    }

    public void Execute(byte[] input, Scratch scratch)
    {
        var config = ModelConfig.Parse(input, "config.json");
        var spec = ArchitectureCatalog.Detect(config);
        if (spec is null) return;
        _ = spec.TensorsFromConfig(config).Count;
        _ = ModelMemoryEstimator.Estimate(config, new MemoryEstimateOptions { DTypes = MemoryDType.All });
    }
}
