using BigModel.Errors;

namespace BigModel.Inference;

/// <summary>How token vectors become one sentence vector.</summary>
public enum EmbeddingPooling
{
    /// <summary>The mean of the real tokens' vectors (padding excluded).</summary>
    Mean,
    /// <summary>The first ([CLS]) token's vector.</summary>
    Cls,
}

/// <summary>Settings for <see cref="InferenceSession.Embed(IReadOnlyList{string}, EmbeddingOptions?, CancellationToken)"/>.</summary>
public sealed record EmbeddingOptions
{
    /// <summary>L2-normalise the vectors; null follows the model folder (sentence-transformers' modules.json Normalize step).</summary>
    public bool? Normalize { get; init; }

    /// <summary>Pooling; null follows the model folder (1_Pooling/config.json), else mean.</summary>
    public EmbeddingPooling? Pooling { get; init; }

    /// <summary>Texts encoded together (padded to the longest of them).</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Longest input in tokens; longer ones are truncated. Null follows sentence_bert_config.json, else the model's position limit.</summary>
    public int? MaxTokens { get; init; }

    internal void Validate()
    {
        if (BatchSize is < 1 or > 4096)
            throw new BigModelException(BigModelErrorCode.InvalidArgument, $"BatchSize is {BatchSize}; use 1 to 4096.");
        if (MaxTokens is int m && m < 2)
            throw new BigModelException(BigModelErrorCode.InvalidArgument, $"MaxTokens is {m}; use at least 2.");
    }
}

/// <summary>The vectors of one <see cref="InferenceSession.Embed(IReadOnlyList{string}, EmbeddingOptions?, CancellationToken)"/> call.</summary>
public sealed class EmbeddingResult
{
    internal EmbeddingResult(IReadOnlyList<string>? texts, IReadOnlyList<float[]> vectors, IReadOnlyList<int> tokenCounts, bool normalized, EmbeddingPooling pooling, TimeSpan elapsed)
    {
        Texts = texts;
        Vectors = vectors;
        TokenCounts = tokenCounts;
        Normalized = normalized;
        Pooling = pooling;
        Elapsed = elapsed;
    }

    /// <summary>The input texts, when the input was text.</summary>
    public IReadOnlyList<string>? Texts { get; }

    /// <summary>One vector per input, in input order.</summary>
    public IReadOnlyList<float[]> Vectors { get; }

    /// <summary>Tokens each input was encoded to (after truncation).</summary>
    public IReadOnlyList<int> TokenCounts { get; }

    public int Dimensions => Vectors.Count > 0 ? Vectors[0].Length : 0;

    public bool Normalized { get; }

    public EmbeddingPooling Pooling { get; }

    public TimeSpan Elapsed { get; }

    /// <summary>Cosine similarity of two vectors (1 identical direction, 0 orthogonal).</summary>
    public static double CosineSimilarity(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException("vectors differ in length.");
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }
        return na == 0 || nb == 0 ? 0 : dot / Math.Sqrt(na * nb);
    }
}
