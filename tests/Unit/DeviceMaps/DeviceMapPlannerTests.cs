using BigModel.Checkpoints;
using BigModel.DeviceMaps;
using BigModel.Errors;
using BigModel.Tests.Support;
using static BigModel.Tests.DeviceMaps.AccelerateModels;

namespace BigModel.Tests.DeviceMaps;

/// <summary>The planner end to end on checkpoints written to disk (modules renamed so natural order is registration order).</summary>
public sealed class DeviceMapPlannerTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Writes the tensors (zeros) as model.safetensors in a fresh folder and opens it.</summary>
    private Checkpoint Write(IEnumerable<TensorInfo> tensors, string name)
    {
        var folder = _dir.Combine(name);
        Directory.CreateDirectory(folder);
        var layout = SafetensorsLayout.Create(tensors.Select(t => new TensorSpec(t.Name, t.DType, t.Shape.ToArray())));
        using (var writer = new SafetensorsWriter(Path.Combine(folder, "model.safetensors"), layout))
        {
            writer.Write(new byte[layout.DataLength]);
            writer.Complete();
        }
        return Checkpoint.Open(folder);
    }

    private static Dictionary<string, string> AsDictionary(DeviceMap map) => map.Entries.ToDictionary(e => e.Module, e => e.Device.Name);

    [Fact]
    public void Checkpoint_on_disk_gives_accelerate_s_layer_level_split()
    {
        var checkpoint = Write([.. ModelForTest("0.", renamed: true), .. ModelForTest("1.", renamed: true), .. ModelForTest("2.", renamed: true)], "three");
        var map = DeviceMapPlanner.Plan(checkpoint, new DeviceMapOptions { MaxMemory = Budget((0, 500), (1, 500)), Strategy = DeviceMapStrategy.Sequential });
        Equal(Expected(("0", 0), ("1.a_linear1", 0), ("1.b_batchnorm", 0), ("1.c_linear2", 1), ("2", 1)), AsDictionary(map));
        Assert.Equal(["0", "1.a_linear1", "1.b_batchnorm", "1.c_linear2", "2"], map.Entries.Select(e => e.Module));
        Assert.Equal(708, map.TotalBytes);
        Assert.Equal("""{"0":0,"1.a_linear1":0,"1.b_batchnorm":0,"1.c_linear2":1,"2":1}""", map.ToJson(indented: false));
        Assert.Equal(checkpoint.Path, map.Source);
    }

    [Fact]
    public void Auto_balances_where_sequential_fills_gpu0()
    {
        var checkpoint = Write(ModelForTest(renamed: true), "one");
        var budget = Budget((0, 300), (1, 300));
        var sequential = DeviceMapPlanner.Plan(checkpoint, new DeviceMapOptions { MaxMemory = budget, Strategy = DeviceMapStrategy.Sequential });
        Equal(Expected(("", 0)), AsDictionary(sequential));

        var auto = DeviceMapPlanner.Plan(checkpoint, new DeviceMapOptions { MaxMemory = budget });
        Equal(Expected(("a_linear1", 0), ("b_batchnorm", 1), ("c_linear2", 1)), AsDictionary(auto));
        Assert.Equal(215, auto.Budget![Device.Gpu(0)]);
        Assert.Equal(300, auto.RequestedBudget![Device.Gpu(0)]);
        Assert.Equal(DeviceMapStrategy.Auto, auto.Strategy);
        var gpu0 = auto.Devices.Single(d => d.Device == Device.Gpu(0));
        Assert.Equal((64L, 215L, 300L, 100L), (gpu0.UsedBytes!.Value, gpu0.GrantedBytes!.Value, gpu0.RequestedBytes!.Value, gpu0.ReservedBytes));
        Assert.Equal(["a_linear1"], gpu0.Modules);
    }

    [Fact]
    public void Reserve_is_held_back_on_every_device_but_disk()
    {
        var map = DeviceMapPlanner.Plan(ModelForTest(), options: new DeviceMapOptions
        {
            MaxMemory = Budget((0, 300), ("cpu", 1000), ("disk", 5000)),
            Strategy = DeviceMapStrategy.Sequential,
            Reserve = 100,
        });
        Assert.Equal(Budget((0, 200), ("cpu", 900), ("disk", 5000)).ToJson(), map.Budget!.ToJson());
        Assert.Contains(map.Log, l => l.StartsWith("Reserve: 100 B", StringComparison.Ordinal));
    }

    [Fact]
    public void Measured_budget_is_used_when_none_is_given()
    {
        var map = DeviceMapPlanner.Plan(ModelForTest(), options: new DeviceMapOptions
        {
            DetectMemory = notes =>
            {
                notes.Add("cuda:0: 1000 B free (test)");
                return MaxMemory.Create([new(Device.Gpu(0), 1000), new(Device.Cpu, 5000)], detected: true);
            },
        });
        // A single measured GPU keeps 10% free under the balanced strategies, as Accelerate does.
        Assert.Equal(900, map.Budget![Device.Gpu(0)]);
        Assert.Contains(map.Log, l => l.Contains("cuda:0: 1000 B free (test)", StringComparison.Ordinal));
        Equal(Expected(("", 0)), AsDictionary(map));
    }

    [Fact]
    public void Leaving_cpu_out_of_the_budget_sends_the_rest_to_disk_with_a_warning()
    {
        var map = DeviceMapPlanner.Plan(ModelForTest(), options: new DeviceMapOptions { MaxMemory = Budget((0, 200)) });
        Equal(Expected(("linear1", 0), ("batchnorm", "disk"), ("linear2", "disk")), AsDictionary(map));
        var warning = Assert.Single(map.Warnings, w => w.Message.StartsWith("The model does not fit without disk", StringComparison.Ordinal)).Message;
        Assert.Contains("172 B (172 bytes, 72.9% of 236 B)", warning, StringComparison.Ordinal);
        Assert.Contains("cpu is not in the budget", warning, StringComparison.Ordinal);
        Assert.Equal(BigModelErrorCode.ModelDoesNotFit, map.Warnings.Single(w => w.Message == warning).Code);
        Assert.Equal(172, map.OffloadedBytes);
        Assert.Equal(172.0 / 236, map.OffloadedShare!.Value, 6);
    }

    [Fact]
    public void Cpu_offload_is_reported_when_gpus_are_granted()
    {
        var map = DeviceMapPlanner.Plan(ModelForTest(), options: new DeviceMapOptions { MaxMemory = Budget((0, 200), ("cpu", 1000)) });
        Assert.Contains(map.Warnings, w => w.Message.StartsWith("172 B (172 bytes, 72.9% of the model) is offloaded to cpu", StringComparison.Ordinal)
            && w.Code == BigModelErrorCode.OffloadedToSlowerDevice);
        Assert.Equal(BigModelErrorCode.OffloadedToSlowerDevice, Assert.Throws<BigModelException>(() => map.ThrowIfOffloaded()).Code);
        map.ThrowIfOffloaded(allowCpu: true);
    }

    [Fact]
    public void User_no_split_patterns_keep_blocks_whole()
    {
        List<TensorInfo> tensors = [.. ModelForTest("0."), .. ModelForTest("1."), .. ModelForTest("2.")];
        var options = new DeviceMapOptions { MaxMemory = Budget((0, 500), (1, 500)), Strategy = DeviceMapStrategy.Sequential, NoSplit = ["[0-9]"] };
        Equal(Expected(("0", 0), ("1", 1), ("2", 1)), AsDictionary(DeviceMapPlanner.Plan(tensors, options: options)));
    }

    [Fact]
    public void Invalid_patterns_are_reported()
    {
        var e = Assert.Throws<BigModelException>(() => DeviceMapPlanner.Plan(ModelForTest(), options: new DeviceMapOptions
        {
            MaxMemory = Budget(("cpu", 1000)),
            NoSplit = ["model.layers.[0-"],
        }));
        Assert.Equal(BigModelErrorCode.DeviceMapInvalidPattern, e.Code);
    }

    [Theory]
    [InlineData("model.layers.[")]
    [InlineData("[")]
    [InlineData("model.[0")]
    public void An_unclosed_character_class_is_named_as_such(string pattern)
    {
        var e = Assert.Throws<BigModelException>(() => new ModuleNamePattern(pattern));
        Assert.Equal(BigModelErrorCode.DeviceMapInvalidPattern, e.Code);
        Assert.Contains("is never closed", e.Message);
    }

    [Fact]
    public void User_tied_parameters_stay_on_one_device()
    {
        List<TensorInfo> tensors = [.. ModelForTest("layer1."), .. ModelForTest("layer2."), .. ModelForTest("layer3.")];
        var map = DeviceMapPlanner.Plan(tensors, options: new DeviceMapOptions
        {
            MaxMemory = Budget((0, 400), (1, 500)),
            Strategy = DeviceMapStrategy.Sequential,
            TiedParameters = [["layer1.linear2.weight", "layer3.linear2.weight"]],
        });
        Assert.Equal(map.DeviceOf("layer1.linear2.weight"), map.DeviceOf("layer3.linear2.weight"));
        Assert.Equal([["layer1.linear2.weight", "layer3.linear2.weight"]], map.TiedParameters);
        Assert.Empty(map.CheckTiedParameters(map.TiedParameters));
    }

    [Fact]
    public void Unclean_maps_keep_every_placement()
    {
        var map = DeviceMapPlanner.Plan(ModelForTest(), options: new DeviceMapOptions { MaxMemory = Budget((0, 1000)), Clean = false });
        Assert.Equal(["linear1", "batchnorm", "linear2"], map.Entries.Select(e => e.Module));
        Assert.Equal([64L, 72L, 100L], map.Entries.Select(e => e.Bytes!.Value));
    }

    [Fact]
    public void A_model_without_tensors_gives_an_empty_map()
    {
        var map = DeviceMapPlanner.Plan([], options: new DeviceMapOptions { MaxMemory = Budget((0, 100)) });
        Assert.Equal(0, map.Count);
        Assert.Equal("{}", map.ToJson(indented: false));
        Assert.Equal(0, map.TotalBytes);
    }

    [Fact]
    public void Disk_budget_is_not_enforced_but_reported()
    {
        var map = DeviceMapPlanner.Plan(ModelForTest(), options: new DeviceMapOptions { MaxMemory = Budget(("cpu", 150), ("disk", 10)) });
        Assert.Contains(map.Warnings, w => w.Message.StartsWith("Disk offload needs 236 B but the disk budget is 10 B", StringComparison.Ordinal)
            && w.Code == BigModelErrorCode.MemoryBudgetExceeded);
    }

    [Fact]
    public void Negative_reserve_is_rejected()
    {
        var e = Assert.Throws<BigModelException>(() => DeviceMapPlanner.Plan(ModelForTest(), options: new DeviceMapOptions { MaxMemory = Budget(("cpu", 1)), Reserve = -1 }));
        Assert.Equal(BigModelErrorCode.InvalidSize, e.Code);
    }

    [Fact]
    public void Strategy_names_parse_as_transformers_writes_them()
    {
        Assert.Equal(DeviceMapStrategy.BalancedLow0, DeviceMapStrategies.Parse("balanced_low_0"));
        Assert.Equal(DeviceMapStrategy.Auto, DeviceMapStrategies.Parse("AUTO"));
        Assert.Equal("balanced_low_0", DeviceMapStrategy.BalancedLow0.ToAccelerateName());
        Assert.Equal(BigModelErrorCode.InvalidArgument, Assert.Throws<BigModelException>(() => DeviceMapStrategies.Parse("greedy")).Code);
    }

    [Theory]
    [InlineData("llama", "model.layers.12", true)]
    [InlineData("llama", "model.layers.12.mlp", false)]
    [InlineData("llama", "model.layers", false)]
    [InlineData("llama", "layers.0", true)]
    [InlineData("qwen2", "model.layers.3", true)]
    [InlineData("bert", "bert.encoder.layer.11", true)]
    [InlineData("bert", "bert.encoder.layer.11.attention", false)]
    [InlineData("bert", "bert.embeddings", true)]
    [InlineData("bert", "bert.embeddings.word_embeddings", false)]
    [InlineData("gpt2", "transformer.h.7", true)]
    [InlineData("gpt2", "transformer.h.7.attn", false)]
    [InlineData("gpt2", "transformer.wte", false)]
    public void Architecture_no_split_blocks(string family, string module, bool noSplit)
    {
        var spec = BigModel.Architectures.ArchitectureCatalog.All.Single(s => s.Family == family);
        Assert.Equal(noSplit, NoSplitRule.FromArchitecture(spec).Any(r => r.IsMatch(module)));
        Assert.Equal(spec.IsNoSplit(module), NoSplitRule.FromArchitecture(spec).Any(r => r.IsMatch(module)));
    }

    [Theory]
    [InlineData("model.layers.*", "model.layers.3", true)]
    [InlineData("model.layers.*", "model.layers.3.mlp", false)]
    [InlineData("model.layers.**", "model.layers.3.mlp", true)]
    [InlineData("*.layer.?", "bert.encoder.layer.7", false)]
    [InlineData("**.layer.?", "bert.encoder.layer.7", true)]
    [InlineData("h.[0-4]", "h.3", true)]
    [InlineData("h.[!0-4]", "h.3", false)]
    [InlineData("lm_head", "lm_head", true)]
    [InlineData("lm_head", "lm_head2", false)]
    public void Module_name_globs(string pattern, string name, bool matches)
    {
        Assert.Equal(matches, new ModuleNamePattern(pattern).IsMatch(name));
    }

    [Fact]
    public void Options_from_text_read_every_field_and_keep_defaults_for_blanks()
    {
        var options = DeviceMapOptions.FromText(null, "balanced_low_0", "float16", "2GiB", ["model.layers.*"]);
        Assert.Equal(DeviceMapStrategy.BalancedLow0, options.Strategy);
        Assert.Equal(DType.F16, options.DType);
        Assert.Equal(2L << 30, options.Reserve);
        Assert.Equal(["model.layers.*"], options.NoSplit);
        var defaults = DeviceMapOptions.FromText(null, " ", "", null);
        Assert.Equal((DeviceMapStrategy.Auto, (DType?)null, 0L), (defaults.Strategy, defaults.DType, defaults.Reserve));
        Assert.Equal(BigModelErrorCode.InvalidSize, Assert.Throws<BigModelException>(() => DeviceMapOptions.FromText(null, reserve: "lots")).Code);
        Assert.Equal(BigModelErrorCode.InvalidDType, Assert.Throws<BigModelException>(() => DeviceMapOptions.FromText(null, dtype: "float7")).Code);
    }
}
