using BigModel.DeviceMaps;

namespace BigModel.Tests.DeviceMaps;

/// <summary>Accelerate's test_clean_device_map, plus the corners of its prefix matching.</summary>
public sealed class CleanDeviceMapTests
{
    private static string Clean(params (string Key, object Device)[] map) =>
        string.Join(", ", DeviceMapCleaner.Clean(map.Select(e => new KeyValuePair<string, Device>(e.Key, Device.FromObject(e.Device))))
            .Select(e => $"{e.Key}: {e.Value.Name}"));

    [Fact]
    public void Everything_on_one_device_becomes_the_root_key()
    {
        Assert.Equal(": 0", Clean(("a", 0), ("b", 0), ("c", 0)));
    }

    [Fact]
    public void Children_of_level_one_regroup()
    {
        Assert.Equal("a: 0, b: 1, c: 1", Clean(("a.x", 0), ("a.y", 0), ("b.x", 1), ("b.y", 1), ("c", 1)));
    }

    [Fact]
    public void Children_of_level_two_regroup()
    {
        Assert.Equal("a: 0, b.x: 1, b.y: 2, c: 2",
            Clean(("a.x", 0), ("a.y", 0), ("b.x.0", 1), ("b.x.1", 1), ("b.y.0", 2), ("b.y.1", 2), ("c", 2)));
    }

    [Fact]
    public void A_single_key_below_a_module_is_left_as_it_is()
    {
        // Accelerate only regroups when more than one key shares the device.
        Assert.Equal("a.x: 0, b: 1", Clean(("a.x", 0), ("b", 1)));
        Assert.Equal("model: 0", Clean(("model", 0)));
    }

    [Fact]
    public void Order_of_first_appearance_is_kept()
    {
        Assert.Equal("model.embed: 0, model.layers: cpu, model.norm: disk, lm_head: 0",
            Clean(("model.embed", 0), ("model.layers.0", "cpu"), ("model.layers.1", "cpu"), ("model.norm", "disk"), ("lm_head", 0)));
    }

    [Fact]
    public void Names_that_only_share_characters_are_not_grouped()
    {
        // "layers.1" is not a parent of "layers.10".
        Assert.Equal("layers.1: 0, layers.10: 1", Clean(("layers.1", 0), ("layers.10", 1)));
    }
}
