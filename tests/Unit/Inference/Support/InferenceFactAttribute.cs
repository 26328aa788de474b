using BigModel.Tests.Support;

namespace BigModel.Tests.Inference.Support;

/// <summary>What an inference test needs from the machine.</summary>
public enum Needs
{
    /// <summary>The stories260K checkpoint under ../shared/models (or BIGMODEL_STORIES260K).</summary>
    Stories260K,
    /// <summary>python3 with numpy, for the independent reference implementations.</summary>
    PythonNumpy,
    /// <summary>A processor that runs the native decode kernel (AVX2 with FMA, or AVX-512).</summary>
    DecodeKernel,
}

/// <summary>
/// A fact that reports itself skipped, with the reason, when a requirement is missing, so a machine without the
/// real weights or python shows what did not run instead of passing silently.
/// </summary>
public sealed class InferenceFactAttribute : FactAttribute
{
    public InferenceFactAttribute(params Needs[] needs)
    {
        var missing = needs.Select(Requirements.Missing).Where(m => m is not null).ToList();
        if (missing.Count > 0) Skip = string.Join("; ", missing);
    }
}

/// <summary>As <see cref="InferenceFactAttribute"/>, for theories.</summary>
public sealed class InferenceTheoryAttribute : TheoryAttribute
{
    public InferenceTheoryAttribute(params Needs[] needs)
    {
        var missing = needs.Select(Requirements.Missing).Where(m => m is not null).ToList();
        if (missing.Count > 0) Skip = string.Join("; ", missing);
    }
}

public static class Requirements
{
    public static string? Missing(Needs need) => need switch
    {
        Needs.Stories260K => Directory.Exists(Stories260K) && File.Exists(Path.Combine(Stories260K, "model.safetensors"))
            ? null
            : $"stories260K is not at {Stories260K} (set BIGMODEL_STORIES260K)",
        Needs.PythonNumpy => PythonReference.NumpyPython is null ? PythonReference.NumpyUnavailable : null,
        Needs.DecodeKernel => BigModel.Inference.DecodeKernel.IsSupported ? null : "this processor has neither AVX2 with FMA nor AVX-512",
        _ => "unknown requirement",
    };

    public static string Stories260K => SharedModels.Stories260K;
}
