namespace BigModel.Tests.Support;

/// <summary>Where the repository, its tools and the machine's shared models are, seen from the test binaries.</summary>
public static class TestPaths
{
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

    /// <summary>stories260K in Hugging Face layout (BIGMODEL_STORIES260K overrides the location).</summary>
    public static string Stories260K =>
        Environment.GetEnvironmentVariable("BIGMODEL_STORIES260K") is { Length: > 0 } p ? p
        : Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "models", "stories260K"));

    /// <summary>
    /// The test harness (tests/Harness) built in the same configuration as these tests, e.g.
    /// tests/Harness/bin/Debug/net10.0/BigModel.Harness.dll.
    /// </summary>
    public static string Harness
    {
        get
        {
            var framework = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Name;
            var configuration = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name;
            return Path.Combine(RepositoryRoot, "tests", "Harness", "bin", configuration, framework, "BigModel.Harness.dll");
        }
    }
}
