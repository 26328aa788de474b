using BigModel.Inference;

namespace BigModel.Tests.Inference;

/// <summary>Logits processing with transformers' semantics, and the seeded draw.</summary>
public sealed class TokenSamplerTests
{
    [Fact]
    public void Repetition_penalty_divides_positive_and_multiplies_negative_logits_once_per_token()
    {
        float[] scores = [2f, -2f, 1f, 4f];
        TokenSampler.ApplyRepetitionPenalty(scores, [0, 1, 0, 0], 2.0);
        Assert.Equal([1f, -4f, 1f, 4f], scores);
    }

    [Fact]
    public void Greedy_takes_the_first_highest_logit_after_the_penalty()
    {
        var sampler = new TokenSampler(new GenerationOptions(), 1);
        Assert.Equal(1, sampler.Next([1f, 3f, 3f, 2f], []));
        var penalised = new TokenSampler(new GenerationOptions { RepetitionPenalty = 2.0 }, 1);
        Assert.Equal(2, penalised.Next([1f, 3f, 2.5f, 2f], [1]));
    }

    [Fact]
    public void Top_k_keeps_ties_with_the_kth_score()
    {
        float[] scores = [5f, 1f, 3f, 3f, 0f];
        TokenSampler.ApplyTopK(scores, 2);
        Assert.Equal([5f, float.NegativeInfinity, 3f, 3f, float.NegativeInfinity], scores);
    }

    [Fact]
    public void Top_p_removes_the_tail_whose_mass_is_at_most_one_minus_p_and_keeps_the_best()
    {
        // Probabilities ≈ [0.643, 0.237, 0.087, 0.032].
        float[] scores = [3f, 2f, 1f, 0f];
        TokenSampler.ApplyTopP(scores, 0.8);
        Assert.Equal([3f, 2f, float.NegativeInfinity, float.NegativeInfinity], scores);
        float[] tiny = [3f, 2f, 1f, 0f];
        TokenSampler.ApplyTopP(tiny, 0.01);
        Assert.Equal([3f, float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity], tiny);
    }

    [Fact]
    public void The_draw_follows_the_cumulative_distribution()
    {
        float[] scores = [0f, 0f, float.NegativeInfinity, 0f];
        Assert.Equal(0, TokenSampler.Draw(scores, 0.0));
        Assert.Equal(0, TokenSampler.Draw(scores, 0.33));
        Assert.Equal(1, TokenSampler.Draw(scores, 0.34));
        Assert.Equal(3, TokenSampler.Draw(scores, 0.67));
        Assert.Equal(3, TokenSampler.Draw(scores, 0.9999999999));
    }

    [Fact]
    public void Sampling_frequencies_follow_the_softmax_and_repeat_with_the_seed()
    {
        var options = new GenerationOptions { Temperature = 1.0 };
        float[] logits = [MathF.Log(0.5f), MathF.Log(0.3f), MathF.Log(0.2f)];
        int[] Run(ulong seed)
        {
            var sampler = new TokenSampler(options, seed);
            return Enumerable.Range(0, 20000).Select(_ => sampler.Next(logits, [])).ToArray();
        }
        var first = Run(7);
        Assert.Equal(first, Run(7));
        Assert.NotEqual(first, Run(8));
        Assert.Equal(0.5, first.Count(i => i == 0) / 20000.0, 1);
        Assert.Equal(0.3, first.Count(i => i == 1) / 20000.0, 1);
        Assert.Equal(0.2, first.Count(i => i == 2) / 20000.0, 1);
    }

    [Fact]
    public void A_low_temperature_concentrates_and_top_k_one_is_greedy()
    {
        float[] logits = [1f, 1.5f, 0.5f];
        var cold = new TokenSampler(new GenerationOptions { Temperature = 0.01 }, 3);
        Assert.All(Enumerable.Range(0, 100), _ => Assert.Equal(1, cold.Next(logits, [])));
        var k1 = new TokenSampler(new GenerationOptions { Temperature = 5, TopK = 1 }, 3);
        Assert.All(Enumerable.Range(0, 100), _ => Assert.Equal(1, k1.Next(logits, [])));
    }

    [Fact]
    public void The_seeded_generator_is_uniform_and_deterministic()
    {
        var a = new SeededRandom(42);
        var b = new SeededRandom(42);
        var values = Enumerable.Range(0, 10000).Select(_ => a.NextDouble()).ToArray();
        Assert.Equal(values, Enumerable.Range(0, 10000).Select(_ => b.NextDouble()));
        Assert.All(values, v => Assert.InRange(v, 0.0, 0.9999999999999999));
        Assert.Equal(0.5, values.Average(), 1);
        Assert.NotEqual(new SeededRandom(1).NextUInt64(), new SeededRandom(2).NextUInt64());
    }
}
