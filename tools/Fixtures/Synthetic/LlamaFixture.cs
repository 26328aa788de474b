using System.Diagnostics;
using System.Text.Json.Nodes;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Fixtures.IO;

namespace BigModel.Fixtures.Synthetic;

/// <summary>
/// A synthetic Llama-family checkpoint: transformers-complete config.json, generation_config.json, and weights
/// drawn from N(0, std) (RMSNorm weights 1 + N(0, std), so the norms matter), streamed shard by shard. The tensor
/// list is Core's own reading of the config, so what is generated and what BigModel sizes always agree.
/// </summary>
public static class LlamaFixture
{
    public static ArchitectureSpec SpecFor(string modelType) => modelType switch
    {
        "qwen2" => ArchitectureCatalog.Qwen2,
        "mistral" => ArchitectureCatalog.Mistral,
        "llama" => ArchitectureCatalog.Llama,
        _ => throw new BigModelException(BigModelErrorCode.InvalidArgument, $"unknown model type '{modelType}'."),
    };

    /// <summary>The tensors (in forward order) a checkpoint of <paramref name="options"/> holds.</summary>
    public static IReadOnlyList<TensorSpec> Tensors(LlamaOptions options)
    {
        options.Validate();
        var json = LlamaConfig.Create(options).ToJsonString();
        return TensorsOf(ModelConfig.Parse(System.Text.Encoding.UTF8.GetBytes(json)), options);
    }

    private static List<TensorSpec> TensorsOf(ModelConfig config, LlamaOptions options)
    {
        var spec = SpecFor(options.ModelType);
        return spec.TensorsFromConfig(config)
            .OrderBy(t => t.Name, new TensorOrder(spec))
            .Select(t => new TensorSpec(t.Name, options.DType, t.Shape))
            .ToList();
    }

    /// <summary>Value rule of a tensor: norm weights around 1, everything else (biases included) around 0.</summary>
    public static ValueRule Rule(string name, double std) =>
        name.EndsWith("norm.weight", StringComparison.Ordinal) ? new ValueRule(1f, (float)std) : new ValueRule(0f, (float)std);

    public static FixtureResult Generate(string destination, LlamaOptions options, bool force = false)
    {
        options.Validate();
        var clock = Stopwatch.StartNew();
        using var folder = FixtureFolder.Begin(destination, options.Recipe, force);
        if (folder is null) return new FixtureResult(Path.GetFullPath(destination), true, 0, clock.Elapsed, []);

        var configPath = folder.Combine("config.json");
        var config = LlamaConfig.Create(options);
        long bytes = JsonFiles.Write(configPath, config);
        bytes += JsonFiles.Write(folder.Combine("generation_config.json"), new JsonObject
        {
            ["bos_token_id"] = config["bos_token_id"]!.DeepClone(),
            ["eos_token_id"] = config["eos_token_id"]!.DeepClone(),
        });

        var tensors = TensorsOf(ModelConfig.Load(configPath), options);
        var plan = ShardPlan.Create(tensors, options.MaxShardSize);
        bytes += SyntheticCheckpointWriter.Write(folder.Path, plan, options.Seed, t => Rule(t.Name, options.Std));
        folder.Commit();
        var notes = new List<string>
        {
            $"{tensors.Count} tensors, {tensors.Sum(t => t.ElementCount):N0} parameters, {plan.TotalSize:N0} tensor bytes in {plan.Shards.Count} file(s)",
        };
        return new FixtureResult(folder.Destination, false, bytes, clock.Elapsed, notes);
    }
}
