using System.Diagnostics;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Fixtures.Sparse;
using BigModel.Tests.Support;

namespace BigModel.Tests.Fixtures;

public sealed class SparseFixtureTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Bert_base_cased_shaped_checkpoint_has_the_published_size_and_costs_no_disk()
    {
        var path = _dir.Combine("bert-base-cased");
        SparseFixture.Generate(TestFixtures.Config("bert-base-cased"), path);

        var checkpoint = Checkpoint.Open(path);
        Assert.Same(ArchitectureCatalog.Bert, checkpoint.Architecture);
        Assert.Equal(108_310_272, checkpoint.ParameterCount);
        Assert.Equal(433_241_088, checkpoint.ByteLength);
        Assert.Equal(199, checkpoint.Tensors.Count);
        Assert.Equal([DType.F32], checkpoint.DTypes);
        Assert.Equal(90_660_864, checkpoint.Tensors.Where(t => t.Name.StartsWith("embeddings.")).Sum(t => t.ByteLength));
        Assert.Equal(File.ReadAllBytes(TestFixtures.Config("bert-base-cased")), File.ReadAllBytes(Path.Combine(path, "config.json")));

        var file = Path.Combine(path, "model.safetensors");
        Assert.True(new FileInfo(file).Length > 433_241_088);
        if (AllocatedBytes(file) is long allocated)
            Assert.True(allocated < 1 << 20, $"{allocated} bytes allocated on disk");
    }

    [Theory]
    [InlineData("llama-7b", 6_738_415_616L, 291)]
    [InlineData("mistral-7b", 7_241_732_096L, 291)]
    [InlineData("qwen2-0.5b", 494_032_768L, 290)]
    [InlineData("gpt2", 124_439_808L, 148)]
    [InlineData("bert-base-cased", 108_310_272L, 199)]
    public void Public_model_configs_give_their_published_parameter_counts(string name, long parameters, int tensors)
    {
        var path = _dir.Combine(name);
        SparseFixture.Generate(TestFixtures.Config(name), path, DType.BF16);
        var checkpoint = Checkpoint.Open(path);
        Assert.Equal(parameters, checkpoint.ParameterCount);
        Assert.Equal(2 * parameters, checkpoint.ByteLength);
        Assert.Equal(tensors, checkpoint.Tensors.Count);
        var expected = ArchitectureCatalog.Require(checkpoint.Config!).TensorsFromConfig(checkpoint.Config!);
        Assert.Equal(expected.Select(t => t.Name).Order(), checkpoint.Tensors.Select(t => t.Name).Order());
    }

    [Fact]
    public void A_config_of_an_unknown_family_is_refused()
    {
        var config = _dir.Combine("config.json");
        File.WriteAllText(config, """{"model_type": "t5", "architectures": ["T5ForConditionalGeneration"]}""");
        var e = Assert.Throws<BigModelException>(() => SparseFixture.Generate(config, _dir.Combine("out")));
        Assert.Equal(BigModelErrorCode.UnsupportedArchitecture, e.Code);
        Assert.False(Directory.Exists(_dir.Combine("out")));
    }

    [Fact]
    public void A_changed_config_makes_the_folder_stale()
    {
        var config = _dir.Combine("gpt2.json");
        File.Copy(TestFixtures.Config("gpt2"), config);
        var path = _dir.Combine("gpt2");
        Assert.False(SparseFixture.Generate(config, path).Reused);
        Assert.True(SparseFixture.Generate(config, path).Reused);
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"n_layer\": 12", "\"n_layer\": 2"));
        Assert.Equal(BigModelErrorCode.DestinationExists, Assert.Throws<BigModelException>(() => SparseFixture.Generate(config, path)).Code);
        Assert.False(SparseFixture.Generate(config, path, force: true).Reused);
        Assert.Equal(2 * 12 + 4, Checkpoint.Open(path).Tensors.Count);
    }

    /// <summary>Blocks actually allocated, from stat(1); null where it is unavailable.</summary>
    private static long? AllocatedBytes(string file)
    {
        if (!OperatingSystem.IsLinux()) return null;
        var info = new ProcessStartInfo("stat", ["-c", "%b %B", file]) { RedirectStandardOutput = true };
        using var process = Process.Start(info)!;
        var parts = process.StandardOutput.ReadToEnd().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        process.WaitForExit();
        return process.ExitCode == 0 ? long.Parse(parts[0]) * long.Parse(parts[1]) : null;
    }
}
