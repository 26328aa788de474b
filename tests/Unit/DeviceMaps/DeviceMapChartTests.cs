using System.Xml.Linq;
using BigModel.Checkpoints;
using BigModel.DeviceMaps;
using BigModel.Tests.Support;
using static BigModel.Tests.DeviceMaps.AccelerateModels;

namespace BigModel.Tests.DeviceMaps;

public sealed class DeviceMapChartTests : IDisposable
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static List<TensorInfo> ThousandLayers()
    {
        var list = new List<TensorInfo> { T("model.embed_tokens.weight", [64, 16]) };
        for (int i = 0; i < 1000; i++)
        {
            list.Add(T($"model.layers.{i}.proj.weight", [16, 16]));
            list.Add(T($"model.layers.{i}.norm.weight", [16]));
        }
        list.Add(T("lm_head.weight", [64, 16]));
        return list;
    }

    [Fact]
    public void A_thousand_modules_stay_legible()
    {
        // 1,088 bytes per layer: about 200 layers per GPU, 400 on cpu, the rest on disk.
        var map = DeviceMapPlanner.Plan(ThousandLayers(), options: new DeviceMapOptions
        {
            MaxMemory = Budget((0, 220_000), (1, 220_000), ("cpu", 440_000)),
            Strategy = DeviceMapStrategy.Sequential,
        });
        Assert.True(map.Count > 1000);
        var text = DeviceMapChart.ToSvg(map);
        var svg = XDocument.Parse(text);
        var labels = svg.Descendants(Svg + "text").Select(t => t.Value).ToList();
        foreach (var device in new[] { "cuda:0", "cuda:1", "cpu", "disk" }) Assert.Contains(device, labels);

        // Blocks too narrow to see are merged, each merged block saying how many modules it holds.
        var blocks = svg.Descendants(Svg + "rect").Where(r => r.Element(Svg + "title") is not null).ToList();
        Assert.True(blocks.Count < map.Count, $"{blocks.Count} blocks for {map.Count} entries");
        Assert.All(blocks.Where(b => b.Element(Svg + "title")!.Value.Contains(" modules, ", StringComparison.Ordinal)),
            b => Assert.True(double.Parse(b.Attribute("width")!.Value, System.Globalization.CultureInfo.InvariantCulture) >= 0.5));
        int covered = blocks.Select(b => b.Element(Svg + "title")!.Value)
            .Where(t => !t.Contains("granted", StringComparison.Ordinal) && !t.Contains("kept free", StringComparison.Ordinal))
            .Sum(t => t.Contains(" modules, ", StringComparison.Ordinal) ? int.Parse(t[..t.IndexOf(' ')], System.Globalization.CultureInfo.InvariantCulture) : 1);
        Assert.Equal(map.Count, covered);
        Assert.True(text.Length < 1_000_000);
    }

    [Fact]
    public void Maps_without_sizes_draw_equal_blocks()
    {
        var map = DeviceMap.FromJson("""{"model.embed_tokens": 0, "model.layers": "cpu", "lm_head": "disk"}""");
        var svg = XDocument.Parse(DeviceMapChart.ToSvg(map));
        Assert.Contains(svg.Descendants(Svg + "text"), t => t.Value.Contains("sizes unknown", StringComparison.Ordinal));
        Assert.Contains(svg.Descendants(Svg + "title"), t => t.Value == "lm_head — size unknown on disk");
    }

    [Fact]
    public void Names_are_escaped()
    {
        var map = DeviceMap.FromEntries([new("a<b&\"c\"", Device.Gpu(0))]);
        var svg = XDocument.Parse(DeviceMapChart.ToSvg(map, title: "x < y"));
        Assert.Contains(svg.Descendants(Svg + "title"), t => t.Value.StartsWith("a<b&\"c\"", StringComparison.Ordinal));
        Assert.Contains(svg.Descendants(Svg + "text"), t => t.Value == "x < y");
    }

    [Fact]
    public void Extension_chooses_svg_or_html()
    {
        var map = DeviceMapPlanner.Plan(ModelForTest(), options: new DeviceMapOptions { MaxMemory = Budget((0, 200), ("cpu", 1000)) });
        var svgPath = _dir.Combine("map.svg");
        var htmlPath = _dir.Combine("map.HTML");
        DeviceMapChart.Save(map, svgPath);
        DeviceMapChart.Save(map, htmlPath);
        Assert.Equal("svg", XDocument.Load(svgPath).Root!.Name.LocalName);
        var html = File.ReadAllText(htmlPath);
        Assert.StartsWith("<!DOCTYPE html>", html, StringComparison.Ordinal);
        Assert.Contains("<td>cuda:0</td><td>64 B</td><td>200 B</td><td>100 B</td><td>1</td><td>27.1%</td>", html, StringComparison.Ordinal);
    }
}
