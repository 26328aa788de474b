using System.Text;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.DeviceMaps;
using BigModel.Errors;

namespace BigModel.Fuzz.Targets;

/// <summary>
/// Device maps and memory budgets as users hand them over (a JSON file from the internet or another tool): the same
/// text is read as a device map (DeviceMap.Load) and as Accelerate's max_memory (MaxMemory.FromJson). A map that
/// reads is cleaned, written back and read again (the round trip must give the same map), and measured on a model's
/// tensors; a budget that reads plans a map for that model. An input is accepted when either reading succeeds; when both
/// refuse it, the budget's error is reported.
/// </summary>
public sealed class DeviceMapTarget : IFuzzTarget
{
    private const string LlamaConfig =
        """{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":64,"intermediate_size":172,"num_hidden_layers":5,"num_attention_heads":8,"num_key_value_heads":4,"vocab_size":512,"max_position_embeddings":512,"tie_word_embeddings":true}""";

    private static readonly Lazy<(ModelConfig Config, ArchitectureSpec Spec, IReadOnlyList<TensorInfo> Tensors)> Model = new(() =>
    {
        var config = ModelConfig.Parse(Encoding.UTF8.GetBytes(LlamaConfig), "config.json");
        var spec = ArchitectureCatalog.Require(config);
        return (config, spec, spec.SizedTensorsFromConfig(config));
    });

    public string Name => "devicemap";

    public IReadOnlyList<byte[]> Seeds(SeedSources sources)
    {
        var seeds = new List<string>
        {
            """{"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": "cuda:1", "model.layers.2": "cpu", "model.layers.3": "disk", "model.layers.4": "disk", "model.norm": "cpu", "lm_head": "cpu"}""",
            """{"": "cpu"}""",
            """{"model": "disk", "lm_head": 0}""",
            """{"model.embed_tokens": "mps", "model.layers": "xpu:0", "model.norm": "npu:1", "lm_head": "1"}""",
            """{"0": "10GiB", "1": 8000000000, "cpu": "30GiB", "disk": "1TB"}""",
            """{"cpu": "200KiB", "disk": "100GB"}""",
            """{"0": 250000, "cpu": 1e5}""",
        };
        var list = seeds.Select(Encoding.UTF8.GetBytes).ToList();
        // A map planned for the model itself, as New-DeviceMap writes it.
        var (config, spec, tensors) = Model.Value;
        var budget = MaxMemory.Create([new(Device.Gpu(0), 150_000), new(Device.Cpu, 300_000)]);
        list.Add(Encoding.UTF8.GetBytes(DeviceMapPlanner.Plan(tensors, spec, config, new DeviceMapOptions { MaxMemory = budget, Clean = false }).ToJson()));
        foreach (var folder in new[] { sources.MiniLM, sources.Stories260K })
        {
            if (folder is null || !File.Exists(Path.Combine(folder, "model.safetensors"))) continue;
            var checkpoint = Checkpoint.Open(folder);
            var memory = MaxMemory.Create([new(Device.Cpu, checkpoint.Tensors.Sum(t => t.ByteLength) / 2)]);
            list.Add(Encoding.UTF8.GetBytes(DeviceMapPlanner.Plan(checkpoint, new DeviceMapOptions { MaxMemory = memory, Clean = false }).ToJson()));
            list.Add(Encoding.UTF8.GetBytes(memory.ToJson()));
        }
        return list;
    }

    public void Execute(byte[] input, Scratch scratch)
    {
        var (config, spec, tensors) = Model.Value;
        BigModelException? asMap = null;
        try
        {
            var map = DeviceMap.Load(scratch.Write("device_map.json", input));
            var json = map.ToJson();
            var again = DeviceMap.FromJson(json);
            if (again.ToJson() != json) throw new InvalidOperationException("a device map does not survive writing and reading back");
            _ = map.Clean().ToJson();
            _ = map.UnusedKeys(tensors.Select(t => t.Name));
            _ = map.CheckTiedParameters([["model.embed_tokens.weight", "lm_head.weight"]]);
            _ = map.ToPlacement();
            try
            {
                _ = map.Measure(tensors).Devices.Count;
            }
            catch (BigModelException e) when (e.Code == BigModelErrorCode.DeviceMapUncoveredTensors)
            {
                // A map written for another model: reading it was the point.
            }
        }
        catch (BigModelException e)
        {
            asMap = e;
        }
        try
        {
            var budget = MaxMemory.FromJson(Encoding.UTF8.GetString(input), "max_memory.json");
            _ = budget.ToString();
            var planned = DeviceMapPlanner.Plan(tensors, spec, config, new DeviceMapOptions { MaxMemory = budget, DetectMemory = _ => budget });
            _ = planned.ToJson();
        }
        catch (BigModelException) when (asMap is null)
        {
            // A device map is not a budget; the text was accepted as what it is.
        }
    }
}
