using BigModel.Fixtures.MiniLm;
using BigModel.Fixtures.Synthetic;

namespace BigModel.Tests.Fixtures;

/// <summary>
/// Fixtures shared by every test: built once under artifacts/fixtures/ of the repository (git-ignored) and reused
/// by later runs while complete, so only the first run pays for the MiniLM conversion.
/// </summary>
public static class TestFixtures
{
    private static readonly Lazy<string> MiniLmPath = new(() =>
    {
        var path = Path.Combine(FixturesRoot, "minilm");
        MiniLmFixture.Generate(path);
        return path;
    });

    /// <summary>The repository root (the folder holding BigModel.sln).</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>Committed config.json files of public models (tests/fixtures/configs).</summary>
    public static string ConfigsFolder => Path.Combine(RepoRoot, "tests", "fixtures", "configs");

    public static string Config(string name) => Path.Combine(ConfigsFolder, name + ".json");

    /// <summary>Where generated fixtures are kept between runs; BIGMODEL_FIXTURES overrides it.</summary>
    public static string FixturesRoot =>
        Environment.GetEnvironmentVariable("BIGMODEL_FIXTURES") is { Length: > 0 } custom ? custom : Path.Combine(RepoRoot, "artifacts", "fixtures");

    /// <summary>all-MiniLM-L6-v2 as a Hugging Face BertModel folder (with onnx/model.onnx as the reference).</summary>
    public static string MiniLm => MiniLmPath.Value;

    /// <summary>A small synthetic checkpoint, generated once per options into a folder named after them.</summary>
    public static string Llama(LlamaOptions options, string name)
    {
        var path = Path.Combine(FixturesRoot, name);
        lock (typeof(TestFixtures))
            LlamaFixture.Generate(path, options);
        return path;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "BigModel.sln"))) return dir.FullName;
        throw new InvalidOperationException($"BigModel.sln was not found above {AppContext.BaseDirectory}.");
    }
}
