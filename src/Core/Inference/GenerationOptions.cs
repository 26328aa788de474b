using BigModel.Errors;

namespace BigModel.Inference;

/// <summary>
/// How to continue a prompt. With <see cref="Temperature"/> 0 the most likely token is taken each step (greedy);
/// above 0 tokens are sampled after the logits pass through repetition penalty, temperature, top-k and top-p, in
/// that order and with the meanings transformers gives them.
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to generate.</summary>
    public int MaxNewTokens { get; init; } = 32;

    /// <summary>0 for greedy decoding; above 0 divides the logits before sampling.</summary>
    public double Temperature { get; init; }

    /// <summary>Keep only the k most likely tokens (ties at the k-th included); 0 keeps all.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all.</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>Above 1 discourages tokens already in the sequence (prompt included): positive logits are divided by it, negative ones multiplied.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>Seed for sampling; null draws one (reported in the result, so a run can be repeated).</summary>
    public ulong? Seed { get; init; }

    /// <summary>Token ids that end generation; null uses the model's EOS ids (generation_config.json, else config.json).</summary>
    public IReadOnlyList<int>? StopTokenIds { get; init; }

    /// <summary>Keep each step's raw logits in <see cref="GenerationResult.Scores"/>.</summary>
    public bool ReturnScores { get; init; }

    internal void Validate()
    {
        if (MaxNewTokens < 0 || MaxNewTokens > 1_000_000)
            throw Bad($"MaxNewTokens is {MaxNewTokens}; use 0 to 1000000.");
        if (!double.IsFinite(Temperature) || Temperature < 0)
            throw Bad($"Temperature is {Temperature}; use 0 (greedy) or a positive number.");
        if (TopK < 0)
            throw Bad($"TopK is {TopK}; use 0 (off) or a positive count.");
        if (!double.IsFinite(TopP) || TopP <= 0 || TopP > 1)
            throw Bad($"TopP is {TopP}; use a number in (0, 1].");
        if (!double.IsFinite(RepetitionPenalty) || RepetitionPenalty <= 0)
            throw Bad($"RepetitionPenalty is {RepetitionPenalty}; use a positive number (1 is off).");
    }

    private static BigModelException Bad(string message) => new(BigModelErrorCode.InvalidArgument, message);
}
