namespace BigModel.Inference;

/// <summary>Why generation stopped.</summary>
public enum StopReason
{
    /// <summary>An end-of-sequence (stop) token was generated.</summary>
    EndOfSequence,
    /// <summary><see cref="GenerationOptions.MaxNewTokens"/> tokens were generated.</summary>
    MaxNewTokens,
    /// <summary>Cancellation was requested; the tokens generated until then are returned.</summary>
    Cancelled,
}

/// <summary>One generated token, as streamed.</summary>
public sealed record GeneratedToken(int Index, int Id, string? Text, TimeSpan Latency);

/// <summary>Where the time of one generation went.</summary>
public sealed record GenerationTimings(
    TimeSpan Load,
    TimeSpan FirstToken,
    TimeSpan Total,
    IReadOnlyList<TimeSpan> TokenLatencies)
{
    /// <summary>Generated tokens per second over the whole generation, prompt processing included.</summary>
    public double TokensPerSecond => Total > TimeSpan.Zero ? TokenLatencies.Count / Total.TotalSeconds : 0;

    /// <summary>Tokens per second after the first (the decode rate, without prompt processing).</summary>
    public double DecodeTokensPerSecond
    {
        get
        {
            var decode = Total - FirstToken;
            return TokenLatencies.Count > 1 && decode > TimeSpan.Zero ? (TokenLatencies.Count - 1) / decode.TotalSeconds : 0;
        }
    }

    /// <summary>Mean latency of the tokens after the first.</summary>
    public TimeSpan MeanDecodeLatency => TokenLatencies.Count > 1
        ? TimeSpan.FromTicks((long)TokenLatencies.Skip(1).Average(t => t.Ticks))
        : TimeSpan.Zero;
}

/// <summary>The outcome of one <see cref="InferenceSession.Generate(IReadOnlyList{int}, GenerationOptions?, Action{GeneratedToken}?, CancellationToken)"/>.</summary>
public sealed class GenerationResult
{
    internal GenerationResult(string? prompt, IReadOnlyList<int> inputIds, IReadOnlyList<int> generatedIds, string? text, StopReason stopReason,
        ulong seed, GenerationTimings timings, IReadOnlyList<float[]>? scores)
    {
        Prompt = prompt;
        InputIds = inputIds;
        GeneratedIds = generatedIds;
        Text = text;
        StopReason = stopReason;
        Seed = seed;
        Timings = timings;
        Scores = scores;
    }

    /// <summary>The prompt text, when the input was text.</summary>
    public string? Prompt { get; }

    /// <summary>The prompt's token ids.</summary>
    public IReadOnlyList<int> InputIds { get; }

    /// <summary>The new token ids (a stop token included when one ended generation).</summary>
    public IReadOnlyList<int> GeneratedIds { get; }

    /// <summary>The generated text (special tokens skipped), when the model has a tokenizer.</summary>
    public string? Text { get; }

    public StopReason StopReason { get; }

    /// <summary>The seed sampling used (also for greedy runs, where it has no effect).</summary>
    public ulong Seed { get; }

    public GenerationTimings Timings { get; }

    /// <summary>Each step's raw logits (before penalties and sampling), when asked for.</summary>
    public IReadOnlyList<float[]>? Scores { get; }
}
