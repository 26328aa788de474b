namespace BigModel.Bench;

/// <summary>One benchmark: measures, then renders its section of docs/benchmarks.md.</summary>
public interface IBenchmark
{
    /// <summary>Short name used by --only.</summary>
    string Name { get; }

    /// <summary>Runs the measurement and returns the Markdown section (heading included).</summary>
    string Run(BenchContext context);
}

/// <summary>Where benchmarks may write scratch data, and how long they may take.</summary>
public sealed record BenchContext(string ScratchDirectory, bool Quick)
{
    public string Scratch(string name)
    {
        var path = Path.Combine(ScratchDirectory, name);
        Directory.CreateDirectory(path);
        return path;
    }
}
