using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Errors;

namespace BigModel.Inference;

/// <summary>
/// The checkpoint tensors a model computes with, found by their names relative to the family's base prefix
/// (checkpoints store <c>model.layers.0...</c> or <c>layers.0...</c> depending on the class that saved them) and
/// checked against the shapes the config implies. Mismatches are collected and reported together.
/// </summary>
internal sealed class ModelTensors
{
    private readonly Checkpoint _checkpoint;
    private readonly string _prefix;
    private readonly HashSet<string>? _expected;
    private readonly List<string> _problems = new();

    public ModelTensors(Checkpoint checkpoint, ArchitectureSpec spec, ModelConfig config, string probe)
    {
        _checkpoint = checkpoint;
        var withPrefix = spec.BasePrefix + "." + probe;
        _prefix = checkpoint.Find(withPrefix) is not null ? spec.BasePrefix + "." : "";
        // What the family's catalog says a checkpoint of this config holds decides the optional tensors (biases).
        // Head classes the catalog cannot size (classifiers...) fall back to what the checkpoint holds.
        try
        {
            _expected = new HashSet<string>(spec.TensorsFromConfig(config).Select(t => Relative(t.Name, spec.BasePrefix)), StringComparer.Ordinal);
        }
        catch (BigModelException e) when (e.Code == BigModelErrorCode.UnsupportedArchitecture)
        {
            _expected = null;
        }
    }

    /// <summary>The prefix checkpoint names carry before the relative names ("model." or "").</summary>
    public string Prefix => _prefix;

    /// <summary>True when the family's catalog lists <paramref name="relative"/> for this config.</summary>
    public bool Expects(string relative) => _expected?.Contains(relative) ?? _checkpoint.Find(_prefix + relative) is not null;

    /// <summary>The tensor at <paramref name="relative"/> (under the prefix), checked to have <paramref name="shape"/>.</summary>
    public TensorInfo? Require(string relative, params long[] shape) => RequireName(_prefix + relative, shape);

    /// <summary>As <see cref="Require"/> for a name outside the base prefix (a head such as <c>lm_head.weight</c>).</summary>
    public TensorInfo? RequireName(string name, params long[] shape)
    {
        var tensor = _checkpoint.Find(name);
        if (tensor is null)
        {
            _problems.Add($"'{name}' is missing");
            return null;
        }
        if (!tensor.Shape.SequenceEqual(shape))
            _problems.Add($"'{name}' is {tensor.ShapeText}, the config implies [{string.Join(", ", shape)}]");
        if (!tensor.DType.IsFloatingPoint() || !TorchTypes.TryScalarType(tensor.DType, out _))
            _problems.Add($"'{name}' is {tensor.DType}; weights must be F32, F16, BF16 or F64");
        return tensor;
    }

    public TensorInfo? Find(string name) => _checkpoint.Find(name);

    /// <summary>Throws one error listing every problem found, if any.</summary>
    public void ThrowIfInvalid()
    {
        if (_problems.Count == 0) return;
        throw new BigModelException(BigModelErrorCode.CheckpointDoesNotMatchArchitecture,
            $"the checkpoint does not match its config: {string.Join("; ", _problems.Take(8))}{(_problems.Count > 8 ? $"; and {_problems.Count - 8} more" : "")}.",
            _checkpoint.Path);
    }

    private static string Relative(string name, string basePrefix) =>
        name.StartsWith(basePrefix + ".", StringComparison.Ordinal) ? name[(basePrefix.Length + 1)..] : name;
}
