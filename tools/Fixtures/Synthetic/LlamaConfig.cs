using System.Text.Json.Nodes;
using BigModel.Checkpoints;

namespace BigModel.Fixtures.Synthetic;

/// <summary>A complete transformers config.json for a Llama, Qwen2 or Mistral causal LM of the given options.</summary>
public static class LlamaConfig
{
    public static JsonObject Create(LlamaOptions o)
    {
        string className = o.ModelType switch { "qwen2" => "Qwen2", "mistral" => "Mistral", _ => "Llama" };
        // Token ids of the family's tokenizer when they fit the vocabulary, else Llama's.
        int bos = 1, eos = 2;
        if (o.ModelType == "qwen2" && o.Vocab > 151645) (bos, eos) = (151643, 151645);
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray($"{className}ForCausalLM"),
            ["attention_dropout"] = 0.0,
            ["bos_token_id"] = bos,
            ["eos_token_id"] = eos,
            ["head_dim"] = o.Hidden / o.Heads,
            ["hidden_act"] = "silu",
            ["hidden_size"] = o.Hidden,
            ["initializer_range"] = o.Std,
            ["intermediate_size"] = o.Intermediate,
            ["max_position_embeddings"] = o.MaxPositions,
            ["model_type"] = o.ModelType,
            ["num_attention_heads"] = o.Heads,
            ["num_hidden_layers"] = o.Layers,
            ["num_key_value_heads"] = o.KvHeads,
            ["rms_norm_eps"] = o.ModelType == "qwen2" ? 1e-6 : 1e-5,
            ["rope_scaling"] = null,
            ["rope_theta"] = o.ModelType == "qwen2" ? 1000000.0 : 10000.0,
            ["tie_word_embeddings"] = o.Tied,
            ["torch_dtype"] = o.DType.TorchName(),
            ["use_cache"] = true,
            ["vocab_size"] = o.Vocab,
        };
        switch (o.ModelType)
        {
            case "llama":
                config["attention_bias"] = o.QkvBias;
                config["mlp_bias"] = false;
                config["pretraining_tp"] = 1;
                break;
            case "mistral":
                config["sliding_window"] = null;
                break;
            case "qwen2":
                config["use_sliding_window"] = false;
                config["sliding_window"] = o.MaxPositions;
                config["max_window_layers"] = o.Layers;
                break;
        }
        return Sorted(config);
    }

    /// <summary>transformers writes config keys sorted.</summary>
    private static JsonObject Sorted(JsonObject config)
    {
        var sorted = new JsonObject();
        foreach (var key in config.Select(p => p.Key).Order(StringComparer.Ordinal).ToList())
        {
            var value = config[key];
            config.Remove(key);
            sorted[key] = value;
        }
        return sorted;
    }
}
