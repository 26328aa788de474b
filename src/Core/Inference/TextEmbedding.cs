namespace BigModel.Inference;

/// <summary>One input's embedding: what a script iterates over.</summary>
/// <param name="Index">Position of the input (0-based).</param>
/// <param name="Text">The input text, when the input was text.</param>
/// <param name="Vector">The sentence vector.</param>
/// <param name="TokenCount">Tokens the input was encoded to (after truncation).</param>
public sealed record TextEmbedding(int Index, string? Text, float[] Vector, int TokenCount)
{
    public int Dimensions => Vector.Length;

    /// <summary>Cosine similarity with another embedding.</summary>
    public double Similarity(TextEmbedding other) => EmbeddingResult.CosineSimilarity(Vector, other.Vector);
}

public static class EmbeddingResultExtensions
{
    /// <summary>The result as one <see cref="TextEmbedding"/> per input.</summary>
    public static IReadOnlyList<TextEmbedding> Items(this EmbeddingResult result) =>
        result.Vectors.Select((v, i) => new TextEmbedding(i, result.Texts?[i], v, result.TokenCounts[i])).ToList();
}
