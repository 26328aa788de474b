using BigModel.DeviceMaps;
using BigModel.Errors;
using BigModel.Tests.Support;

namespace BigModel.Tests.DeviceMaps;

/// <summary>Device maps in transformers' and Accelerate's JSON, both ways.</summary>
public sealed class DeviceMapJsonTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("0", DeviceKind.Gpu, 0)]
    [InlineData("3", DeviceKind.Gpu, 3)]
    [InlineData("cuda", DeviceKind.Gpu, 0)]
    [InlineData("cuda:1", DeviceKind.Gpu, 1)]
    [InlineData(" CUDA:2 ", DeviceKind.Gpu, 2)]
    [InlineData("gpu:4", DeviceKind.Gpu, 4)]
    [InlineData("xpu:1", DeviceKind.Gpu, 1)]
    [InlineData("npu:0", DeviceKind.Gpu, 0)]
    [InlineData("mlu:2", DeviceKind.Gpu, 2)]
    [InlineData("musa:1", DeviceKind.Gpu, 1)]
    [InlineData("hpu", DeviceKind.Gpu, 0)]
    [InlineData("mps", DeviceKind.Mps, 0)]
    [InlineData("xpu", DeviceKind.Xpu, 0)]
    [InlineData("cpu", DeviceKind.Cpu, 0)]
    [InlineData("disk", DeviceKind.Disk, 0)]
    public void Device_spellings_of_accelerate_and_torch_are_read(string text, DeviceKind kind, int index)
    {
        var d = Device.Parse(text);
        Assert.Equal(kind, d.Kind);
        Assert.Equal(index, d.Index);
    }

    [Theory]
    [InlineData("meta")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("tpu:0")]
    [InlineData("")]
    [InlineData("99999999")]
    public void Other_device_spellings_are_rejected(string text)
    {
        Assert.Equal(BigModelErrorCode.InvalidDevice, Assert.Throws<BigModelException>(() => Device.Parse(text)).Code);
    }

    [Fact]
    public void Map_written_by_transformers_is_read()
    {
        // json.dumps(model.hf_device_map) of a Llama split over two GPUs, the cpu and the disk.
        const string json = """
            {"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": 1, "model.norm": "cpu", "lm_head": "disk"}
            """;
        var map = DeviceMap.FromJson(json);
        Assert.Equal(["model.embed_tokens", "model.layers.0", "model.layers.1", "model.norm", "lm_head"], map.Entries.Select(e => e.Module));
        Assert.Equal(Device.Gpu(1), map["model.layers.1"]);
        Assert.Equal(Device.Disk, map["lm_head"]);
        Assert.False(map.HasSizes);
        Assert.True(map.UsesDisk);
        Assert.Equal(Device.Gpu(0), map.DeviceOf("model.layers.0.self_attn.q_proj.weight"));
        Assert.Null(map.DeviceOf("model.layers.2.mlp.up_proj.weight"));
    }

    [Fact]
    public void Torch_device_strings_and_digit_strings_are_accepted()
    {
        var map = DeviceMap.FromJson("""{"": "cuda:0"}""");
        Assert.Equal(Device.Gpu(0), map.DeviceOf("anything.at.all"));
        var mixed = DeviceMap.FromJson("""{"a": "cuda:1", "b": "1", "c": "npu:2", "d": "mps", "e": "xpu"}""");
        Assert.Equal("""{"a":1,"b":1,"c":2,"d":"mps","e":"xpu"}""", mixed.ToJson(indented: false));
    }

    [Fact]
    public void Written_json_round_trips()
    {
        var map = DeviceMap.FromEntries([new("model.embed_tokens", Device.Gpu(0)), new("model.layers.0", Device.Gpu(1)), new("model.norm", Device.Cpu), new("lm_head", Device.Disk)]);
        var json = map.ToJson(indented: false);
        Assert.Equal("""{"model.embed_tokens":0,"model.layers.0":1,"model.norm":"cpu","lm_head":"disk"}""", json);
        var path = _dir.Combine("map.json");
        map.Save(path);
        var back = DeviceMap.Load(path);
        Assert.Equal(map.Entries, back.Entries);
        Assert.Equal(json, back.ToJson(indented: false));
    }

    [Theory]
    [InlineData("[1, 2]", BigModelErrorCode.InvalidDeviceMap)]
    [InlineData("{\"a\": 0, \"a\": 1}", BigModelErrorCode.InvalidDeviceMap)]
    [InlineData("{\"a\": 0.5}", BigModelErrorCode.InvalidDevice)]
    [InlineData("{\"a\": -1}", BigModelErrorCode.InvalidDevice)]
    [InlineData("{\"a\": true}", BigModelErrorCode.InvalidDevice)]
    [InlineData("{\"a\": \"gpu0\"}", BigModelErrorCode.InvalidDevice)]
    [InlineData("{\"a..b\": 0}", BigModelErrorCode.InvalidDeviceMap)]
    [InlineData("{\"a\": 0", BigModelErrorCode.InvalidDeviceMap)]
    public void Malformed_maps_are_rejected(string json, BigModelErrorCode code)
    {
        Assert.Equal(code, Assert.Throws<BigModelException>(() => DeviceMap.FromJson(json)).Code);
    }

    [Fact]
    public void Tensors_the_map_misses_are_listed()
    {
        var map = DeviceMap.FromJson("""{"model.embed_tokens": 0, "model.layers": 1}""");
        var assigned = map.AssignTensors(["model.embed_tokens.weight", "model.layers.3.mlp.up_proj.weight"]);
        Assert.Equal(Device.Gpu(1), assigned["model.layers.3.mlp.up_proj.weight"]);
        var e = Assert.Throws<BigModelException>(() => map.AssignTensors(["model.norm.weight", "lm_head.weight"]));
        Assert.Equal(BigModelErrorCode.DeviceMapUncoveredTensors, e.Code);
        Assert.Contains("model.norm.weight, lm_head.weight", e.Message, StringComparison.Ordinal);
        Assert.Equal(["model.layers"], map.UnusedKeys(["model.embed_tokens.weight"]));
    }

    [Fact]
    public void Tied_parameters_on_different_devices_are_reported()
    {
        var map = DeviceMap.FromJson("""{"model.embed_tokens": 0, "model.layers": 0, "lm_head": "cpu"}""");
        var warning = Assert.Single(map.CheckTiedParameters([["model.embed_tokens.weight", "lm_head.weight"]]));
        Assert.Contains("lm_head.weight on cpu", warning.Message, StringComparison.Ordinal);
        Assert.Equal(BigModelErrorCode.DeviceMapTiedParameterInvalid, warning.Code);
        Assert.Empty(map.CheckTiedParameters([["model.embed_tokens.weight", "model.layers.0.x"]]));
    }

    [Fact]
    public void Measuring_a_read_map_gives_its_summary()
    {
        var tensors = AccelerateModels.ModelForTest();
        var map = DeviceMap.FromJson("""{"linear1": 0, "batchnorm": "cpu", "linear2": "disk"}""").Measure(tensors);
        Assert.Equal(236, map.TotalBytes);
        Assert.Equal(172, map.OffloadedBytes);
        Assert.Equal([64L, 72L, 100L], map.Devices.Select(d => d.UsedBytes!.Value));
        var cleaned = DeviceMap.FromJson("""{"linear1": 0, "batchnorm": 0, "linear2": 0}""").Measure(tensors).Clean();
        Assert.Equal(("", 236L), (cleaned.Entries.Single().Module, cleaned.Entries.Single().Bytes!.Value));
    }

    [Fact]
    public void Offload_checks_throw_with_numbers()
    {
        var tensors = AccelerateModels.ModelForTest();
        var disk = DeviceMap.FromJson("""{"linear1": 0, "batchnorm": "cpu", "linear2": "disk"}""").Measure(tensors);
        var e = Assert.Throws<BigModelException>(() => disk.ThrowIfOffloaded(allowCpu: true));
        Assert.Equal(BigModelErrorCode.ModelDoesNotFit, e.Code);
        Assert.Contains("100 B (100 bytes, 42.4% of 236 B) on disk: linear2", e.Message, StringComparison.Ordinal);

        var cpu = DeviceMap.FromJson("""{"linear1": 0, "batchnorm": "cpu", "linear2": 0}""").Measure(tensors);
        cpu.ThrowIfOffloaded(allowCpu: true);
        e = Assert.Throws<BigModelException>(() => cpu.ThrowIfOffloaded());
        Assert.Equal(BigModelErrorCode.OffloadedToSlowerDevice, e.Code);
        Assert.Contains("72 B (72 bytes, 30.5% of 236 B) on cpu: batchnorm", e.Message, StringComparison.Ordinal);

        // Without accelerators the cpu is where the model runs, not an offload target.
        DeviceMap.FromJson("""{"": "cpu"}""").Measure(tensors).ThrowIfOffloaded();
    }

    [Theory]
    [InlineData("""{"\ud800": 0}""")]
    [InlineData("""{"lm_head": "\udc00"}""")]
    public void Unpaired_surrogates_are_a_typed_error(string json) =>
        Assert.Equal(BigModelErrorCode.InvalidDeviceMap, Assert.Throws<BigModelException>(() => DeviceMap.FromJson(json)).Code);

    [Fact]
    public void Cleaning_a_map_of_200000_keys_keeps_every_key_and_its_size()
    {
        // Alternating devices, so nothing collapses and every key keeps its own size. (How long cleaning takes at
        // this scale is the device-map benchmark's business, not a unit test's.)
        var entries = Enumerable.Range(0, 200_000).Select(i => new KeyValuePair<string, Device>($"m.{i}", i % 2 == 0 ? Device.Gpu(0) : Device.Cpu));
        var tensors = Enumerable.Range(0, 200_000).Select(i => new BigModel.Checkpoints.TensorInfo($"m.{i}.w", BigModel.Checkpoints.DType.U8, [3], 3, "x", 0));
        var measured = DeviceMap.FromEntries(entries).Measure(tensors);
        var cleaned = measured.Clean();
        Assert.Equal(200_000, cleaned.Count);
        Assert.All(cleaned.Entries, e => Assert.Equal(3, e.Bytes));
    }

    [Fact]
    public void A_cleaned_key_sums_the_keys_it_replaced_and_nested_keys_are_counted_once()
    {
        var tensors = new[] { ("a.x", 10L), ("a.b.y", 5L), ("c.z", 7L), ("c.d.w", 1L) }
            .Select(t => new BigModel.Checkpoints.TensorInfo(t.Item1, BigModel.Checkpoints.DType.U8, [t.Item2], t.Item2, "x", 0));
        var map = DeviceMap.FromJson("""{"a": 0, "a.b": 1, "c": 0, "c.d": 0}""").Measure(tensors);
        Assert.Equal([10L, 5L, 7L, 1L], map.Entries.Select(e => e.Bytes!.Value));
        // Nothing collapses here: each key keeps what it covers, a nested key is not counted again in its parent.
        Assert.Equal([("a", 10L), ("a.b", 5L), ("c", 7L), ("c.d", 1L)], map.Clean().Entries.Select(e => (e.Module, e.Bytes!.Value)));
        var parts = new[] { ("c.d.w", 1L), ("c.e.v", 2L), ("f.u", 3L) }
            .Select(t => new BigModel.Checkpoints.TensorInfo(t.Item1, BigModel.Checkpoints.DType.U8, [t.Item2], t.Item2, "x", 0));
        var collapsing = DeviceMap.FromJson("""{"c.d": 0, "c.e": 0, "f": 1}""").Measure(parts);
        Assert.Equal([("c", 3L), ("f", 3L)], collapsing.Clean().Entries.Select(e => (e.Module, e.Bytes!.Value)));
    }
}
