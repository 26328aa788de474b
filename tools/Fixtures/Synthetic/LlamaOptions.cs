using System.Globalization;
using BigModel.Checkpoints;
using BigModel.Errors;

namespace BigModel.Fixtures.Synthetic;

/// <summary>
/// The shape and contents of a synthetic Llama-family checkpoint. The defaults make the 1.19 GB F32 model the
/// benchmarks use (hidden 1024, intermediate 2816, 18 layers, 16 heads, vocab 32000, untied head).
/// </summary>
public sealed record LlamaOptions
{
    public int Hidden { get; init; } = 1024;
    public int Intermediate { get; init; } = 2816;
    public int Layers { get; init; } = 18;
    public int Heads { get; init; } = 16;
    public int KvHeads { get; init; } = 16;
    public int Vocab { get; init; } = 32000;
    public int MaxPositions { get; init; } = 2048;
    public bool Tied { get; init; }

    /// <summary>Biases on the q/k/v projections (and, for llama's attention_bias, on o_proj). Always on for qwen2.</summary>
    public bool QkvBias { get; init; }

    /// <summary>llama, qwen2 or mistral.</summary>
    public string ModelType { get; init; } = "llama";

    public DType DType { get; init; } = DType.F32;
    public ulong Seed { get; init; } = 1;
    public double Std { get; init; } = 0.02;

    /// <summary>Largest shard in bytes; null writes one model.safetensors.</summary>
    public long? MaxShardSize { get; init; }

    /// <summary>Throws <see cref="BigModelErrorCode.InvalidArgument"/> for combinations transformers cannot load.</summary>
    public void Validate()
    {
        static BigModelException Bad(string m) => new(BigModelErrorCode.InvalidArgument, m);
        if (ModelType is not ("llama" or "qwen2" or "mistral")) throw Bad($"--model-type must be llama, qwen2 or mistral, not '{ModelType}'.");
        if (Hidden <= 0 || Intermediate <= 0 || Layers <= 0 || Heads <= 0 || KvHeads <= 0 || Vocab <= 0 || MaxPositions <= 0)
            throw Bad("every dimension must be positive.");
        if (Hidden % Heads != 0) throw Bad($"--hidden {Hidden} must be a multiple of --heads {Heads}.");
        if (Heads % KvHeads != 0) throw Bad($"--heads {Heads} must be a multiple of --kv-heads {KvHeads}.");
        if ((Hidden / Heads) % 2 != 0) throw Bad($"the head size {Hidden / Heads} must be even for rotary embeddings.");
        if (ModelType == "mistral" && QkvBias) throw Bad("Mistral has no attention biases; use --model-type llama or qwen2 with --qkv-bias.");
        if (DType is not (DType.F32 or DType.F16 or DType.BF16)) throw Bad($"--dtype must be F32, F16 or BF16, not {DType}.");
        if (!(Std >= 0 && double.IsFinite(Std))) throw Bad("--std must be a finite non-negative number.");
        if (MaxShardSize is <= 0) throw Bad("--max-shard-size must be positive.");
    }

    /// <summary>Whether the checkpoint has q/k/v biases.</summary>
    public bool HasQkvBias => ModelType == "qwen2" || QkvBias;

    /// <summary>Canonical text of everything that decides the files' contents.</summary>
    public string Recipe => string.Create(CultureInfo.InvariantCulture,
        $"llama v1 type={ModelType} hidden={Hidden} intermediate={Intermediate} layers={Layers} heads={Heads} kv={KvHeads} vocab={Vocab} " +
        $"positions={MaxPositions} tied={Tied} bias={HasQkvBias} dtype={DType} seed={Seed} std={Std:R} shard={MaxShardSize?.ToString(CultureInfo.InvariantCulture) ?? "none"}");
}
