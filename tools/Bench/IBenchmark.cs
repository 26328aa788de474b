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

    /// <summary>
    /// The generated 1.19 GB F32 Llama the decode benchmarks share (hidden 1024, intermediate 2816, 18 layers, 16
    /// heads, vocab 32000, untied head), and a tiny one whose run measures the runtime's own footprint; generated once.
    /// </summary>
    public (string Model, string Tiny) DecodeModels()
    {
        var model = Path.Combine(ScratchDirectory, "llama-1b-f32");
        BigModel.Fixtures.Synthetic.LlamaFixture.Generate(model, new BigModel.Fixtures.Synthetic.LlamaOptions());
        var tiny = Path.Combine(ScratchDirectory, "llama-tiny");
        BigModel.Fixtures.Synthetic.LlamaFixture.Generate(tiny, new BigModel.Fixtures.Synthetic.LlamaOptions { Hidden = 64, Intermediate = 176, Layers = 2, Heads = 4, KvHeads = 2, Vocab = 512 });
        return (model, tiny);
    }
}
