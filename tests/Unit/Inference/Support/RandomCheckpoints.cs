using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using BigModel.Architectures;
using BigModel.Checkpoints;

namespace BigModel.Tests.Inference.Support;

/// <summary>Shape of a random Llama-family checkpoint.</summary>
public sealed record LlamaShape
{
    public string ModelType { get; init; } = "llama";
    public int Hidden { get; init; } = 32;
    public int Layers { get; init; } = 3;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;
    public int Intermediate { get; init; } = 48;
    public int Vocab { get; init; } = 97;
    public bool Tied { get; init; }
    public bool? AttentionBias { get; init; }
    public int? SlidingWindow { get; init; }
    public double RopeTheta { get; init; } = 10000;
    public JsonObject? RopeScaling { get; init; }
    public double Std { get; init; } = 0.2;
    public DType DType { get; init; } = DType.F32;
    public int[] EosTokenIds { get; init; } = [2];
}

/// <summary>Shape of a random BERT checkpoint.</summary>
public sealed record BertShape
{
    public int Hidden { get; init; } = 32;
    public int Layers { get; init; } = 3;
    public int Heads { get; init; } = 4;
    public int Intermediate { get; init; } = 64;
    public int Vocab { get; init; } = 60;
    public int MaxPositions { get; init; } = 40;
    public double Std { get; init; } = 0.2;
}

/// <summary>
/// Writes checkpoints with seeded random weights in transformers' layout: config.json plus model.safetensors whose
/// tensors are exactly those the architecture catalog lists for the config.
/// </summary>
public static class RandomCheckpoints
{
    public static string WriteLlama(string folder, LlamaShape s, int seed)
    {
        Directory.CreateDirectory(folder);
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(s.ModelType switch { "qwen2" => "Qwen2ForCausalLM", "mistral" => "MistralForCausalLM", _ => "LlamaForCausalLM" }),
            ["model_type"] = s.ModelType,
            ["hidden_size"] = s.Hidden,
            ["intermediate_size"] = s.Intermediate,
            ["num_hidden_layers"] = s.Layers,
            ["num_attention_heads"] = s.Heads,
            ["num_key_value_heads"] = s.KvHeads,
            ["vocab_size"] = s.Vocab,
            ["max_position_embeddings"] = 256,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = s.RopeTheta,
            ["hidden_act"] = "silu",
            ["tie_word_embeddings"] = s.Tied,
            ["bos_token_id"] = 1,
            ["eos_token_id"] = new JsonArray(s.EosTokenIds.Select(i => (JsonNode)i).ToArray()),
            ["torch_dtype"] = s.DType.TorchName(),
        };
        if (s.AttentionBias is bool bias) config["attention_bias"] = bias;
        if (s.SlidingWindow is int window) config["sliding_window"] = window;
        if (s.RopeScaling is not null) config["rope_scaling"] = s.RopeScaling.DeepClone();
        return Write(folder, config, s.DType, s.Std, seed);
    }

    public static string WriteBert(string folder, BertShape s, int seed)
    {
        Directory.CreateDirectory(folder);
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("BertModel"),
            ["model_type"] = "bert",
            ["hidden_size"] = s.Hidden,
            ["intermediate_size"] = s.Intermediate,
            ["num_hidden_layers"] = s.Layers,
            ["num_attention_heads"] = s.Heads,
            ["vocab_size"] = s.Vocab,
            ["max_position_embeddings"] = s.MaxPositions,
            ["type_vocab_size"] = 2,
            ["layer_norm_eps"] = 1e-12,
            ["hidden_act"] = "gelu",
            ["pad_token_id"] = 0,
        };
        return Write(folder, config, DType.F32, s.Std, seed);
    }

    private static string Write(string folder, JsonObject config, DType dtype, double std, int seed)
    {
        var configBytes = Encoding.UTF8.GetBytes(config.ToJsonString());
        File.WriteAllBytes(Path.Combine(folder, "config.json"), configBytes);
        var parsed = ModelConfig.Parse(configBytes, Path.Combine(folder, "config.json"));
        var spec = ArchitectureCatalog.Detect(parsed)!;
        var tensors = spec.TensorsFromConfig(parsed);
        var path = Path.Combine(folder, "model.safetensors");
        var layout = SafetensorsLayout.Create(tensors.Select(t => new TensorSpec(t.Name, dtype, t.Shape)), new Dictionary<string, string> { ["format"] = "pt" });
        using var writer = new SafetensorsWriter(path, layout);
        foreach (var (t, _) in layout.Tensors)
        {
            // Each tensor has its own generator, so its values do not depend on the order tensors are written in.
            var random = new Random(HashCode.Combine(seed, StableHash(t.Name)));
            bool norm = t.Name.Contains("norm", StringComparison.OrdinalIgnoreCase) && t.Name.EndsWith(".weight", StringComparison.Ordinal);
            var values = new float[t.ElementCount];
            for (long i = 0; i < values.Length; i++) values[i] = (float)((norm ? 1.0 : 0.0) + Gaussian(random) * (norm ? 0.1 : std));
            writer.Write(Encode(values, dtype));
        }
        writer.Complete();
        return folder;
    }

    private static int StableHash(string text)
    {
        unchecked
        {
            int h = (int)2166136261;
            foreach (var c in text) h = (h ^ c) * 16777619;
            return h;
        }
    }

    public static byte[] Encode(float[] values, DType dtype)
    {
        int size = dtype.Bits() / 8;
        var bytes = new byte[values.Length * size];
        for (int i = 0; i < values.Length; i++)
        {
            var span = bytes.AsSpan(i * size, size);
            switch (dtype)
            {
                case DType.F32: BinaryPrimitives.WriteSingleLittleEndian(span, values[i]); break;
                case DType.F16: BinaryPrimitives.WriteHalfLittleEndian(span, (Half)values[i]); break;
                case DType.BF16: BinaryPrimitives.WriteUInt16LittleEndian(span, (ushort)(BitConverter.SingleToUInt32Bits(values[i]) >> 16)); break;
                case DType.F64: BinaryPrimitives.WriteDoubleLittleEndian(span, values[i]); break;
                default: throw new ArgumentOutOfRangeException(nameof(dtype));
            }
        }
        return bytes;
    }

    private static double Gaussian(Random random)
    {
        double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
