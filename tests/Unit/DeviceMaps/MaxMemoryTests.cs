using System.Collections;
using BigModel.DeviceMaps;
using BigModel.Errors;
using BigModel.IO;

namespace BigModel.Tests.DeviceMaps;

/// <summary>Accelerate's test_convert_file_size and get_max_memory's ordering and validation.</summary>
public sealed class MaxMemoryTests
{
    [Theory]
    [InlineData("0MB", 0L)]
    [InlineData("100MB", 100_000_000L)]
    [InlineData("2GiB", 2L << 30)]
    [InlineData("512KiB", 512L << 10)]
    [InlineData("1.5GB", 1_500_000_000L)]
    [InlineData("100KB", 100_000L)]
    [InlineData("500", 500L)]
    public void Sizes_convert_as_accelerate_converts_them(string text, long expected)
    {
        Assert.Equal(expected, ByteSize.Parse(text));
    }

    [Theory]
    [InlineData("5MBB")]
    [InlineData("5k0MB")]
    [InlineData("-1GB")]
    public void Malformed_sizes_are_rejected(string text)
    {
        Assert.Equal(BigModelErrorCode.InvalidSize, Assert.Throws<BigModelException>(() => ByteSize.Parse(text)).Code);
    }

    [Fact]
    public void Integer_budgets_are_bytes()
    {
        var memory = MaxMemory.FromDictionary(new Hashtable { [0] = 500 });
        Assert.Equal(500, memory[Device.Gpu(0)]);
    }

    [Fact]
    public void Devices_are_ordered_gpus_first_then_mps_xpu_cpu_disk()
    {
        var memory = MaxMemory.FromDictionary(new Hashtable
        {
            ["disk"] = "1TB", ["cpu"] = "30GiB", ["xpu"] = 5, ["mps"] = 4, [1] = "8GB", ["cuda:0"] = 10737418240L, [3] = 1,
        });
        Assert.Equal(["cuda:0", "cuda:1", "cuda:3", "mps", "xpu", "cpu", "disk"], memory.Devices.Select(d => d.ToString()));
        Assert.Equal(8_000_000_000, memory[Device.Gpu(1)]);
        Assert.Equal(30L << 30, memory[Device.Cpu]);
        var changed = memory.With(Device.Cpu, 1);
        Assert.Equal(1, changed[Device.Cpu]);
        Assert.Equal(memory.Devices, changed.Devices);
    }

    [Fact]
    public void A_device_named_twice_is_an_error()
    {
        var e = Assert.Throws<BigModelException>(() => MaxMemory.FromDictionary(new Hashtable { [0] = 1, ["cuda:0"] = 2 }));
        Assert.Equal(BigModelErrorCode.DeviceMapDuplicateDevice, e.Code);
    }

    [Fact]
    public void Unknown_devices_are_rejected()
    {
        var e = Assert.Throws<BigModelException>(() => MaxMemory.FromDictionary(new Hashtable { ["tpu"] = 1 }));
        Assert.Equal(BigModelErrorCode.InvalidDevice, e.Code);
    }

    [Fact]
    public void Negative_budgets_are_rejected()
    {
        var e = Assert.Throws<BigModelException>(() => MaxMemory.FromDictionary(new Hashtable { ["cpu"] = -1 }));
        Assert.Equal(BigModelErrorCode.InvalidSize, e.Code);
    }

    [Fact]
    public void Json_with_string_keys_as_python_writes_them()
    {
        // json.dumps({0: "10GiB", 1: 8000000000, "cpu": "30GiB"}) turns the int keys into strings.
        var memory = MaxMemory.FromJson("{\"0\": \"10GiB\", \"1\": 8000000000, \"cpu\": \"30GiB\"}");
        Assert.Equal("{\"0\": 10737418240, \"1\": 8000000000, \"cpu\": 32212254720}", memory.ToJson());
        Assert.Equal(memory.ToJson(), MaxMemory.FromJson(memory.ToJson()).ToJson());
    }

    [Fact]
    public void Pairs_parse_device_and_size_strings()
    {
        var memory = MaxMemory.Parse([new("cuda:1", "1GiB"), new("cpu", "2GB")]);
        Assert.Equal("cuda:1=1.00 GiB, cpu=1.86 GiB", memory.ToString());
    }

    [Fact]
    public void Detection_gives_available_ram_for_cpu_without_touching_gpus()
    {
        var notes = new List<string>();
        var memory = MaxMemory.Detect(notes, probeGpus: false);
        Assert.True(memory.IsDetected);
        Assert.Equal([Device.Cpu], memory.Devices);
        Assert.True(memory[Device.Cpu] > 0);
        Assert.Contains(notes, n => n.StartsWith("cpu:", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("""{"\ud800": "1GB"}""")]
    [InlineData("""{"cpu": "1\udc00GB"}""")]
    public void Unpaired_surrogates_in_a_json_budget_are_a_typed_error(string json) =>
        Assert.Equal(BigModelErrorCode.InvalidArgument, Assert.Throws<BigModelException>(() => MaxMemory.FromJson(json)).Code);
}
