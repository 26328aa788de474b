namespace BigModel.Tests.Support;

/// <summary>Real checkpoints provided by the machine (never copied into the repository).</summary>
public static class SharedModels
{
    /// <summary>karpathy's stories260K in Hugging Face Llama layout; override with BIGMODEL_STORIES260K.</summary>
    public static string Stories260K =>
        Environment.GetEnvironmentVariable("BIGMODEL_STORIES260K") is { Length: > 0 } p ? p
        : Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "models", "stories260K"));

    public static bool HasStories260K => File.Exists(Path.Combine(Stories260K, "model.safetensors"));

    /// <summary>The repository root, found by walking up from the test binaries to BigModel.sln.</summary>
    public static string RepositoryRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "BigModel.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("BigModel.sln not found above " + AppContext.BaseDirectory);
        }
    }
}

/// <summary>A fact that needs stories260K; reported as skipped, with the reason, where the model is absent.</summary>
public sealed class SkippableModelFactAttribute : FactAttribute
{
    public SkippableModelFactAttribute()
    {
        if (!SharedModels.HasStories260K)
            Skip = $"stories260K is not present at {SharedModels.Stories260K} (set BIGMODEL_STORIES260K to its folder)";
    }
}
