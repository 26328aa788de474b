using BigModel.Architectures;

namespace BigModel.DeviceMaps;

/// <summary>
/// Which tensors transformers' tie_weights() makes one when tie_word_embeddings holds: the output head's weight is
/// the input embedding (and BERT's decoder bias is the prediction bias). Checkpoints store such a tensor once, so
/// the head often has no tensor at all; the tie still decides where its module goes.
/// </summary>
internal static class ArchitectureTies
{
    public static IReadOnlyList<IReadOnlyList<string>> For(ArchitectureSpec spec, ModelConfig? config, IReadOnlyCollection<string> tensorNames)
    {
        var names = tensorNames as IReadOnlySet<string> ?? new HashSet<string>(tensorNames, StringComparer.Ordinal);
        var prefixed = spec.BasePrefix + ".";
        switch (spec.Family)
        {
            case "bert":
            {
                // Only the masked-LM head has output embeddings to tie; classification heads do not.
                if (!names.Any(n => n.StartsWith("cls.predictions.", StringComparison.Ordinal))) return [];
                var embedding = Resolve(names, prefixed, "embeddings.word_embeddings.weight");
                if (embedding is null) return [];
                var groups = new List<IReadOnlyList<string>> { new[] { embedding, "cls.predictions.decoder.weight" } };
                if (names.Contains("cls.predictions.bias")) groups.Add(new[] { "cls.predictions.bias", "cls.predictions.decoder.bias" });
                return groups;
            }
            default:
            {
                var embeddingLocal = spec.Family == "gpt2" ? "wte.weight" : "embed_tokens.weight";
                var embedding = Resolve(names, prefixed, embeddingLocal);
                if (embedding is null) return [];
                bool headStored = names.Contains("lm_head.weight");
                bool headModel = config?.Architecture is string arch
                    ? spec.HeadArchitectures.Contains(arch)
                    : embedding.StartsWith(prefixed, StringComparison.Ordinal);
                return headStored || headModel ? [new[] { embedding, "lm_head.weight" }] : [];
            }
        }
    }

    private static string? Resolve(IReadOnlySet<string> names, string prefix, string local)
    {
        if (names.Contains(prefix + local)) return prefix + local;
        return names.Contains(local) ? local : null;
    }
}
