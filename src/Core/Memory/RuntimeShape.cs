using BigModel.Architectures;

namespace BigModel.Memory;

/// <summary>The dimensions that decide run-time memory beyond the weights, taken from config.json.</summary>
internal sealed record RuntimeShape(bool IsDecoder, int Layers, int Hidden, int Heads, int KvHeads, int HeadDim, int Intermediate, int Vocab, int? MaxPositions)
{
    public static RuntimeShape? From(ModelConfig config, ArchitectureSpec? spec)
    {
        if (config.HiddenSize is not int hidden || config.NumHiddenLayers is not int layers || config.NumAttentionHeads is not int heads || heads <= 0)
            return null;
        int kv = config.EffectiveKeyValueHeads ?? heads;
        int headDim = config.EffectiveHeadDim ?? hidden / heads;
        int intermediate = config.IntermediateSize ?? 4 * hidden;
        bool decoder = spec?.IsDecoder ?? config.Architecture?.Contains("CausalLM", StringComparison.Ordinal) == true;
        return new RuntimeShape(decoder, layers, hidden, heads, kv, headDim, intermediate, config.VocabSize ?? 0, config.MaxPositionEmbeddings);
    }

    public long KvCacheBytes(int batch, int context, int elementBytes) =>
        IsDecoder ? checked(2L * Layers * batch * context * KvHeads * HeadDim * elementBytes) : 0;

    public long ActivationBytes(int batch, int context, int elementBytes)
    {
        long tokens = checked((long)batch * context);
        long perToken = 2L * Hidden + (long)(Heads + 2 * KvHeads) * HeadDim + 3L * Intermediate;
        long scores = checked((long)batch * Heads * context * context);
        long logits = IsDecoder ? checked((long)batch * Vocab * 4) : 0;
        return checked((tokens * perToken + scores) * elementBytes + logits);
    }
}
