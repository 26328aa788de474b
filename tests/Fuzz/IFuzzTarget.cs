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

/// <summary>
/// Where seeds come from: real checkpoints when present, the torch-written archives committed under
/// tests/Unit/fixtures/pytorch/valid, and generated files always.
/// </summary>
public sealed record SeedSources(string? Stories260K, string? MiniLM, string? PyTorchArchives = null)
{
    /// <summary>The committed torch-written archives, when <see cref="PyTorchArchives"/> points at them.</summary>
    public IReadOnlyList<byte[]> TorchArchives() =>
        PyTorchArchives is { } folder && Directory.Exists(folder)
            ? new[] { "hf_default.bin", "hf_protocol4.bin", "hf_protocol5.bin", "nested.pt" }
                .Select(n => Path.Combine(folder, n)).Where(File.Exists).Select(File.ReadAllBytes).ToList()
            : [];

    /// <summary>
    /// pytorch_model.bin archives laid out as torch.save writes them, holding the tensors (names, dtypes, ranks) of the
    /// real checkpoints present, each shrunk to one element.
    /// </summary>
    public IReadOnlyList<byte[]> RealStateDictArchives() =>
        new[] { MiniLM, Stories260K }
            .Where(folder => folder is not null && File.Exists(Path.Combine(folder, "model.safetensors")))
            .Select(folder => Archives.StateDictArchive.Build(Targets.SafetensorsTarget.ShrunkSpecs(Path.Combine(folder!, "model.safetensors")).Specs))
            .ToList();
}
