using System.Diagnostics;
using System.Globalization;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.DeviceMaps;

// Plans device maps for a synthetic Llama-shaped model (hidden 4096, GQA 32/8 heads, MLP 11008, vocab 32000,
// float16) with N decoder layers and reports wall-clock times. The tensor list is sorted once beforehand, as
// Checkpoint.Open does when a checkpoint is opened; everything after that (tree, sizes, balancing, placement,
// cleaning, summary and the explanation log) is timed.
if (args.Length >= 3 && args[0] == "chart")
{
    // Draws the plan of a real checkpoint: chart <checkpoint> <out.svg|out.html> [budget as JSON].
    var budget = args.Length > 3 ? MaxMemory.FromJson(args[3]) : null;
    var planned = DeviceMapPlanner.Plan(Checkpoint.Open(args[1]), new DeviceMapOptions { MaxMemory = budget });
    DeviceMapChart.Save(planned, args[2]);
    foreach (var line in planned.Log) Console.WriteLine(line);
    foreach (var line in planned.Warnings) Console.WriteLine("WARNING: " + line);
    Console.WriteLine(planned.ToJson());
    return;
}

int layers = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 1000;
int runs = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 50;

var tensors = TensorOrder.Sort(SyntheticLlama(layers), ArchitectureCatalog.Llama);
Console.WriteLine($"Synthetic model: {layers} layers, {tensors.Count} tensors, {tensors.Sum(t => t.ByteLength) / 1e9:0.0} GB (float16).");

if (args.Length > 2 && args[2] == "breakdown") { Breakdown.Run(tensors, Options(DeviceMapStrategy.Auto, "{\"0\": \"24GB\", \"1\": \"24GB\", \"cpu\": \"64GB\"}")); return; }

var scenarios = new (string Name, DeviceMapOptions Options)[]
{
    ("auto, 2 x 24GB GPUs + 64GB cpu + disk", Options(DeviceMapStrategy.Auto, "{\"0\": \"24GB\", \"1\": \"24GB\", \"cpu\": \"64GB\"}")),
    ("sequential, same budget", Options(DeviceMapStrategy.Sequential, "{\"0\": \"24GB\", \"1\": \"24GB\", \"cpu\": \"64GB\"}")),
    ("balanced_low_0, 8 x 80GB GPUs (fits)", Options(DeviceMapStrategy.BalancedLow0, "{\"0\": \"80GB\", \"1\": \"80GB\", \"2\": \"80GB\", \"3\": \"80GB\", \"4\": \"80GB\", \"5\": \"80GB\", \"6\": \"80GB\", \"7\": \"80GB\", \"cpu\": \"64GB\"}")),
};

foreach (var (name, options) in scenarios)
{
    DeviceMap map = null!;
    // Enough warm-up runs for tiered compilation to settle.
    for (int i = 0; i < 30; i++) map = DeviceMapPlanner.Plan(tensors, ArchitectureCatalog.Llama, null, options);
    var times = new double[runs];
    double cpuBefore = Breakdown.Cpu();
    for (int i = 0; i < runs; i++)
    {
        var sw = Stopwatch.StartNew();
        map = DeviceMapPlanner.Plan(tensors, ArchitectureCatalog.Llama, null, options);
        times[i] = sw.Elapsed.TotalMilliseconds;
    }
    double cpuPerRun = (Breakdown.Cpu() - cpuBefore) / runs;
    Array.Sort(times);
    // Wall-clock times suffer from whatever else runs on the machine; process CPU time per run much less so.
    Console.WriteLine($"{name}: wall min {times[0]:0.00} ms, median {times[runs / 2]:0.00} ms, p95 {times[(int)(runs * 0.95)]:0.00} ms; "
        + $"CPU {cpuPerRun:0.00} ms per run ({runs} runs); {map.Count} entries, {map.Log.Count} log lines; {map}.");
}

var chartWatch = Stopwatch.StartNew();
var unclean = new DeviceMapOptions { Strategy = DeviceMapStrategy.Auto, MaxMemory = scenarios[0].Options.MaxMemory, Clean = false };
var chart = DeviceMapChart.ToSvg(DeviceMapPlanner.Plan(tensors, ArchitectureCatalog.Llama, null, unclean));
Console.WriteLine($"Chart of the unclean map: {chart.Length / 1024} KiB of SVG in {chartWatch.Elapsed.TotalMilliseconds:0.0} ms.");
if (Environment.GetEnvironmentVariable("DEVICEMAP_BENCH_CHART") is { Length: > 0 } chartPath) File.WriteAllText(chartPath, chart);

static DeviceMapOptions Options(DeviceMapStrategy strategy, string memory) =>
    new() { Strategy = strategy, MaxMemory = MaxMemory.FromJson(memory) };

static List<TensorInfo> SyntheticLlama(int layers)
{
    const int hidden = 4096, kv = 1024, inter = 11008, vocab = 32000;
    var list = new List<TensorInfo>();
    void Add(string name, params long[] shape)
    {
        long n = shape.Aggregate(1L, (a, d) => a * d);
        list.Add(new TensorInfo(name, DType.F16, shape, n * 2, "synthetic.safetensors", 0));
    }
    Add("model.embed_tokens.weight", vocab, hidden);
    for (int i = 0; i < layers; i++)
    {
        var p = $"model.layers.{i}.";
        Add(p + "self_attn.q_proj.weight", hidden, hidden);
        Add(p + "self_attn.k_proj.weight", kv, hidden);
        Add(p + "self_attn.v_proj.weight", kv, hidden);
        Add(p + "self_attn.o_proj.weight", hidden, hidden);
        Add(p + "mlp.gate_proj.weight", inter, hidden);
        Add(p + "mlp.up_proj.weight", inter, hidden);
        Add(p + "mlp.down_proj.weight", hidden, inter);
        Add(p + "input_layernorm.weight", hidden);
        Add(p + "post_attention_layernorm.weight", hidden);
    }
    Add("model.norm.weight", hidden);
    Add("lm_head.weight", vocab, hidden);
    return list;
}

public static class Breakdown
{
    public static double Cpu() => Process.GetCurrentProcess().TotalProcessorTime.TotalMilliseconds;

    public static void Run(IReadOnlyList<TensorInfo> tensors, DeviceMapOptions options)
    {
        double tree = 0, balance = 0, infer = 0, clean = 0, plan = 0;
        const int n = 20;
        for (int r = 0; r < n + 10; r++)
        {
            double c0 = Cpu();
            var t = DeviceMapPlanner.BuildTree(tensors, ArchitectureCatalog.Llama, null, options);
            double c1 = Cpu();
            var budget = BalancedMemory.Compute(t, options.MaxMemory!, false, false);
            double c2 = Cpu();
            var result = AutoDeviceMap.Infer(t, budget, log: new List<string>());
            double c3 = Cpu();
            DeviceMapCleaner.Clean(result.Placements.OrderBy(p => p.Module.PreOrder).Select(p => new KeyValuePair<string, Device>(p.Module.Name, p.Device)).ToList());
            double c4 = Cpu();
            DeviceMapPlanner.Plan(tensors, ArchitectureCatalog.Llama, null, options);
            double c5 = Cpu();
            if (r < 10) continue;
            tree += c1 - c0; balance += c2 - c1; infer += c3 - c2; clean += c4 - c3; plan += c5 - c4;
        }
        Console.WriteLine($"CPU time per run: tree {tree / n:0.0} ms, balance {balance / n:0.0} ms, infer {infer / n:0.0} ms, clean {clean / n:0.0} ms; whole plan {plan / n:0.0} ms");
    }
}
