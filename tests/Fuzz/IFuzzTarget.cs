namespace BigModel.Fuzz;

/// <summary>
/// One input format under test. <see cref="Execute"/> must end in success or a BigModelException for every
/// input; anything else (another exception, a hang, runaway allocation) is a finding.
/// </summary>
public interface IFuzzTarget
{
    string Name { get; }

    /// <summary>Valid inputs to mutate, from real and generated checkpoints.</summary>
    IReadOnlyList<byte[]> Seeds(SeedSources sources);

    /// <summary>Format-aware mutations beyond the generic byte-level ones; may return null to use only those.</summary>
    byte[]? MutateStructure(byte[] input, Random random) => null;

    /// <summary>Parses the input the way BigModel parses files of this format.</summary>
    void Execute(byte[] input, Scratch scratch);
}

/// <summary>Where seeds come from: real checkpoints when present, generated ones always.</summary>
public sealed record SeedSources(string? Stories260K, string? MiniLM);
