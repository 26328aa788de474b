using System.Xml.Linq;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.DeviceMaps;
using BigModel.Errors;
using BigModel.Tests.Support;
using static BigModel.Tests.DeviceMaps.AccelerateModels;

namespace BigModel.Tests.DeviceMaps;

/// <summary>A fact that is skipped, with the reason shown, when the stories260K checkpoint is not on this machine.</summary>
public sealed class Stories260KFactAttribute : FactAttribute
{
    public static readonly string Folder = SharedModels.Stories260K;

    public Stories260KFactAttribute()
    {
        if (!File.Exists(Path.Combine(Folder, "model.safetensors")))
            Skip = $"stories260K is not present at {Folder}; this test needs the real checkpoint.";
    }
}

/// <summary>
/// Plans on the real stories260K Llama (5 decoder layers of 181,760 bytes, a 131,072-byte embedding tied to the
/// head, which has no tensor of its own).
/// </summary>
public sealed class Stories260KTests : IDisposable
{
    private const long Embedding = 512 * 64 * 4;
    private const long Layer = 181_760;
    private const long Total = Embedding + 5 * Layer + 256;
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Checkpoint Open() => Checkpoint.Open(Stories260KFactAttribute.Folder);

    [Stories260KFact]
    public void Budgets_forcing_cpu_and_disk_give_the_expected_map()
    {
        var checkpoint = Open();
        var map = DeviceMapPlanner.Plan(checkpoint, new DeviceMapOptions { MaxMemory = Budget((0, 400_000), ("cpu", 400_000)), Strategy = DeviceMapStrategy.Sequential });

        // GPU 0 keeps a decoder layer's worth free: the embedding (and the head tied to it) fit, layer 0 does not.
        // The cpu, also a main device, keeps the same room: one layer fits. The rest goes to disk.
        Assert.Equal(
            """{"model.embed_tokens":0,"model.layers.0":"cpu","model.layers.1":"disk","model.layers.2":"disk","model.layers.3":"disk","model.layers.4":"disk","model.norm":"disk","lm_head":0}""",
            map.ToJson(indented: false));
        Assert.Equal(Total, map.TotalBytes);
        Assert.Equal([Embedding, Layer, 4 * Layer + 256], map.Devices.Select(d => d.UsedBytes!.Value));
        Assert.Equal(Layer, map.LargestLayerBytes);
        Assert.Equal(map.DeviceOf("model.embed_tokens.weight"), map.DeviceOf("lm_head.weight"));
        Assert.Contains(map.Log, l => l.Contains("'lm_head.weight' has no tensor of its own", StringComparison.Ordinal));
        Assert.Contains(map.Log, l => l.StartsWith("model.embed_tokens with its tied lm_head", StringComparison.Ordinal));
        Assert.Contains(map.Log, l => l.StartsWith("model.layers.0 (177.50 KiB) does not fit on cuda:0", StringComparison.Ordinal)
            && l.Contains("no-split block", StringComparison.Ordinal));
        var warning = Assert.Single(map.Warnings, w => w.Message.StartsWith("The model does not fit without disk", StringComparison.Ordinal)).Message;
        Assert.Contains($"({4 * Layer + 256} bytes, 69.9% of", warning, StringComparison.Ordinal);
        Assert.Equal(BigModelErrorCode.ModelDoesNotFit, Assert.Throws<BigModelException>(() => map.ThrowIfOffloaded(allowCpu: true)).Code);

        // The single GPU is not rebalanced, so auto gives the same map.
        var auto = DeviceMapPlanner.Plan(checkpoint, new DeviceMapOptions { MaxMemory = Budget((0, 400_000), ("cpu", 400_000)) });
        Assert.Equal(map.ToJson(), auto.ToJson());
    }

    [Stories260KFact]
    public void Json_round_trips_and_covers_every_tensor()
    {
        var checkpoint = Open();
        var map = DeviceMapPlanner.Plan(checkpoint, new DeviceMapOptions { MaxMemory = Budget((0, 400_000), (1, 300_000), ("cpu", 400_000)) });
        var path = _dir.Combine("device_map.json");
        map.Save(path);
        var back = DeviceMap.Load(path);
        Assert.Equal(map.Entries.Select(e => (e.Module, e.Device)), back.Entries.Select(e => (e.Module, e.Device)));
        var tensors = back.AssignTensors(checkpoint.Tensors.Select(t => t.Name).Append("lm_head.weight"));
        Assert.Equal(checkpoint.Tensors.Count + 1, tensors.Count);
        Assert.Empty(back.UnusedKeys(checkpoint.Tensors.Select(t => t.Name).Append("lm_head.weight")));
        var measured = back.Measure(checkpoint);
        Assert.Equal(map.Devices.Select(d => (d.Device, d.UsedBytes)), measured.Devices.Select(d => (d.Device, d.UsedBytes)));
    }

    [Stories260KFact]
    public void Plenty_of_memory_puts_the_whole_model_on_one_gpu()
    {
        var map = DeviceMapPlanner.Plan(Open(), new DeviceMapOptions { MaxMemory = Budget((0, 10_000_000), ("cpu", 10_000_000)) });
        Assert.Equal("""{"":0}""", map.ToJson(indented: false));
        Assert.Empty(map.Warnings);
        Assert.False(map.IsOffloaded);
    }

    [Stories260KFact]
    public void Half_precision_halves_the_plan()
    {
        var tree = DeviceMapPlanner.BuildTree(Open().Tensors, ArchitectureCatalog.Llama, Open().Config, new DeviceMapOptions { DType = DType.F16 });
        Assert.Equal(Total / 2, tree.TotalBytes);
    }

    [Stories260KFact]
    public void Untied_head_is_left_out()
    {
        var map = DeviceMapPlanner.Plan(Open(), new DeviceMapOptions { MaxMemory = Budget((0, 400_000), ("cpu", 400_000)), TieWordEmbeddings = false });
        Assert.DoesNotContain(map.Entries, e => e.Module == "lm_head");
        Assert.Empty(map.TiedParameters);
    }

    [Stories260KFact]
    public void Planning_from_config_alone_matches_the_checkpoint()
    {
        var checkpoint = Open();
        var options = new DeviceMapOptions { MaxMemory = Budget((0, 400_000), ("cpu", 400_000)) };
        var fromConfig = DeviceMapPlanner.PlanFromConfig(checkpoint.Config!, options);
        Assert.Equal(DeviceMapPlanner.Plan(checkpoint, options).ToJson(), fromConfig.ToJson());
    }

    [Stories260KFact]
    public void A_path_a_checkpoint_and_a_config_plan_alike_and_a_family_reorders_both_forms()
    {
        var options = new DeviceMapOptions { MaxMemory = Budget((0, 400_000), ("cpu", 400_000)) };
        var fromFolder = DeviceMapPlanner.Plan(Stories260KFactAttribute.Folder, options);
        var fromConfig = DeviceMapPlanner.Plan(Path.Combine(Stories260KFactAttribute.Folder, "config.json"), options);
        Assert.Equal(fromFolder.ToJson(), fromConfig.ToJson());
        Assert.Equal(DeviceMapPlanner.Plan(Open(), options).ToJson(), fromFolder.ToJson());

        // Without config.json the family comes from -Architecture; the pipeline and the path give the same plan.
        var folder = _dir.Combine("bare");
        Directory.CreateDirectory(folder);
        File.CreateSymbolicLink(Path.Combine(folder, "model.safetensors"), Path.Combine(Stories260KFactAttribute.Folder, "model.safetensors"));
        var bare = Checkpoint.Open(folder);
        var byPath = DeviceMapPlanner.Plan(folder, options, ArchitectureCatalog.Llama);
        var byObject = DeviceMapPlanner.Plan(bare, options, ArchitectureCatalog.Llama);
        Assert.Equal(byPath.ToJson(), byObject.ToJson());
        Assert.Equal(byPath.Log, byObject.Log);
    }

    [Stories260KFact]
    public void Chart_shows_one_bar_per_device()
    {
        var map = DeviceMapPlanner.Plan(Open(), new DeviceMapOptions { MaxMemory = Budget((0, 400_000), ("cpu", 400_000)) });
        var svg = XDocument.Parse(DeviceMapChart.ToSvg(map));
        XNamespace ns = "http://www.w3.org/2000/svg";
        var texts = svg.Descendants(ns + "text").Select(t => t.Value).ToList();
        Assert.Contains("cuda:0", texts);
        Assert.Contains("cpu", texts);
        Assert.Contains("disk", texts);
        Assert.Contains("model.embed_tokens", texts);
        Assert.Contains("128.00 KiB of 390.63 KiB", texts);
        var titles = svg.Descendants(ns + "title").Select(t => t.Value).ToList();
        Assert.Contains("lm_head — 0 B on cuda:0", titles);
        Assert.Contains(titles, t => t.Contains("kept free on cuda:0 for the largest layer", StringComparison.Ordinal));

        var html = _dir.Combine("map.html");
        DeviceMapChart.Save(map, html);
        var page = File.ReadAllText(html);
        Assert.StartsWith("<!DOCTYPE html>", page, StringComparison.Ordinal);
        Assert.Contains("<svg", page, StringComparison.Ordinal);
        Assert.Contains("does not fit without disk", page, StringComparison.Ordinal);
    }
}
