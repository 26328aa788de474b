namespace BigModel.Tests.Support;

/// <summary>Where the out-of-process test tools are, seen from the test binaries.</summary>
public static class TestPaths
{
    /// <summary>
    /// The test harness (tests/Harness) built in the same configuration as these tests, e.g.
    /// tests/Harness/bin/Debug/net10.0/BigModel.Harness.dll.
    /// </summary>
    public static string Harness
    {
        get
        {
            var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
            return Path.Combine(SharedModels.RepositoryRoot, "tests", "Harness", "bin", output.Parent!.Name, output.Name, "BigModel.Harness.dll");
        }
    }
}
