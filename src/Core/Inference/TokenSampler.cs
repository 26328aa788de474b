namespace BigModel.Inference;

/// <summary>
/// Picks the next token from a step's logits the way transformers' generate does: repetition penalty over every
/// token already in the sequence, then (when sampling) temperature, top-k and top-p, softmax, and one draw from
/// the seeded generator. Works on a copy; the caller's logits are left untouched.
/// </summary>
internal sealed class TokenSampler
{
    private readonly GenerationOptions _options;
    private readonly SeededRandom _random;
    private float[] _scores = [];   // the working copy, reused from step to step

    public TokenSampler(GenerationOptions options, ulong seed)
    {
        _options = options;
        _random = new SeededRandom(seed);
    }

    public bool Samples => _options.Temperature > 0;

    public int Next(ReadOnlySpan<float> logits, IReadOnlyCollection<int> sequence)
    {
        if (_scores.Length != logits.Length) _scores = new float[logits.Length];
        var scores = _scores;
        logits.CopyTo(scores);
        ApplyRepetitionPenalty(scores, sequence, _options.RepetitionPenalty);
        if (!Samples) return ArgMax(scores);
        ApplyTemperature(scores, _options.Temperature);
        if (_options.TopK > 0) ApplyTopK(scores, _options.TopK);
        if (_options.TopP < 1.0) ApplyTopP(scores, _options.TopP);
        return Draw(scores, _random.NextDouble());
    }

    /// <summary>Each distinct token of <paramref name="sequence"/> once: positive logits ÷ penalty, negative × penalty.</summary>
    internal static void ApplyRepetitionPenalty(float[] scores, IReadOnlyCollection<int> sequence, double penalty)
    {
        if (penalty == 1.0) return;
        foreach (var id in sequence.Distinct())
        {
            if ((uint)id >= (uint)scores.Length) continue;
            float s = scores[id];
            scores[id] = s < 0 ? (float)(s * penalty) : (float)(s / penalty);
        }
    }

    internal static void ApplyTemperature(float[] scores, double temperature)
    {
        for (int i = 0; i < scores.Length; i++) scores[i] = (float)(scores[i] / temperature);
    }

    /// <summary>Removes every token scoring strictly below the k-th highest score (so ties with it survive).</summary>
    internal static void ApplyTopK(float[] scores, int k)
    {
        k = Math.Min(Math.Max(k, 1), scores.Length);
        var sorted = scores.ToArray();
        Array.Sort(sorted, (a, b) => b.CompareTo(a));
        float threshold = sorted[k - 1];
        for (int i = 0; i < scores.Length; i++)
            if (scores[i] < threshold) scores[i] = float.NegativeInfinity;
    }

    /// <summary>
    /// Sorts ascending, accumulates softmax probabilities, and removes the tokens whose cumulative probability is at
    /// most 1 − p, always keeping the most likely one.
    /// </summary>
    internal static void ApplyTopP(float[] scores, double p)
    {
        var order = Enumerable.Range(0, scores.Length).ToArray();
        // Ascending by score; equal scores keep index order, so the result does not depend on the sort's stability.
        Array.Sort(order, (a, b) => scores[a] != scores[b] ? scores[a].CompareTo(scores[b]) : a.CompareTo(b));
        var probabilities = Softmax(scores);
        double cumulative = 0;
        for (int i = 0; i < order.Length - 1; i++)
        {
            cumulative += probabilities[order[i]];
            if (cumulative <= 1 - p) scores[order[i]] = float.NegativeInfinity;
        }
    }

    internal static double[] Softmax(float[] scores)
    {
        double max = double.NegativeInfinity;
        foreach (var s in scores) if (s > max) max = s;
        var result = new double[scores.Length];
        if (double.IsNegativeInfinity(max)) return result;
        double sum = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            result[i] = float.IsNegativeInfinity(scores[i]) ? 0 : Math.Exp(scores[i] - max);
            sum += result[i];
        }
        for (int i = 0; i < result.Length; i++) result[i] /= sum;
        return result;
    }

    /// <summary>The token whose cumulative probability interval contains <paramref name="u"/> ∈ [0, 1).</summary>
    internal static int Draw(float[] scores, double u)
    {
        var probabilities = Softmax(scores);
        double cumulative = 0;
        int last = -1;
        for (int i = 0; i < probabilities.Length; i++)
        {
            if (probabilities[i] <= 0) continue;
            cumulative += probabilities[i];
            last = i;
            if (u < cumulative) return i;
        }
        // Rounding can leave the total a hair under 1; the last possible token takes the remainder.
        return last >= 0 ? last : ArgMax(scores);
    }

    /// <summary>The first index of the highest score (NaN never wins).</summary>
    internal static int ArgMax(ReadOnlySpan<float> scores)
    {
        int best = 0;
        float bestScore = float.NegativeInfinity;
        for (int i = 0; i < scores.Length; i++)
        {
            if (scores[i] > bestScore)
            {
                bestScore = scores[i];
                best = i;
            }
        }
        return best;
    }
}
