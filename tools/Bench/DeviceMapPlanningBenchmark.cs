using System.Diagnostics;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.DeviceMaps;

namespace BigModel.Bench;

/// <summary>
/// Planning a device map for a 1,000-layer Llama-shaped model (hidden 4096, GQA 32/8 heads, MLP 11008, vocab 32000,
/// float16; 9,003 tensors). Timed: module tree, sizes, balancing, placement, cleaning, summary and the explanation
/// log. Not timed: sorting the tensors, which Checkpoint.Open does once. Goal: under 50 ms.
/// </summary>
public sealed class DeviceMapPlanningBenchmark : IBenchmark
{
    public string Name => "devicemap";

    public string Run(BenchContext context)
    {
        const int layers = 1000;
        var tensors = TensorOrder.Sort(SyntheticLlama(layers), ArchitectureCatalog.Llama);
        var scenarios = new (string Name, DeviceMapStrategy Strategy, string Memory)[]
        {
            ("auto, 2 × 24 GB GPUs + 64 GB cpu + disk", DeviceMapStrategy.Auto, "{\"0\": \"24GB\", \"1\": \"24GB\", \"cpu\": \"64GB\"}"),
            ("sequential, same budget", DeviceMapStrategy.Sequential, "{\"0\": \"24GB\", \"1\": \"24GB\", \"cpu\": \"64GB\"}"),
            ("balanced_low_0, 8 × 80 GB GPUs", DeviceMapStrategy.BalancedLow0, "{\"0\": \"80GB\", \"1\": \"80GB\", \"2\": \"80GB\", \"3\": \"80GB\", \"4\": \"80GB\", \"5\": \"80GB\", \"6\": \"80GB\", \"7\": \"80GB\", \"cpu\": \"64GB\"}"),
        };
        int runs = context.Quick ? 10 : 50;
        var rows = new List<string>();
        foreach (var (name, strategy, memory) in scenarios)
        {
            var options = new DeviceMapOptions { Strategy = strategy, MaxMemory = MaxMemory.FromJson(memory) };
            DeviceMap map = null!;
            for (int i = 0; i < 20; i++) map = DeviceMapPlanner.Plan(tensors, ArchitectureCatalog.Llama, null, options);
            double cpuBefore = Process.GetCurrentProcess().TotalProcessorTime.TotalMilliseconds;
            var timing = Measure.Repeat(runs, () => map = DeviceMapPlanner.Plan(tensors, ArchitectureCatalog.Llama, null, options));
            double cpu = (Process.GetCurrentProcess().TotalProcessorTime.TotalMilliseconds - cpuBefore) / runs;
            rows.Add($"| {name} | {Measure.F(timing.MedianMs)} ms | {Measure.F(timing.MinMs)} ms | {Measure.F(cpu)} ms | {map.Count} entries |");
        }
        var clock = Stopwatch.StartNew();
        var chart = DeviceMapChart.ToSvg(DeviceMapPlanner.Plan(tensors, ArchitectureCatalog.Llama, null,
            new DeviceMapOptions { MaxMemory = MaxMemory.FromJson(scenarios[0].Memory), Clean = false }));
        double chartMs = clock.Elapsed.TotalMilliseconds;
        return $"""
            ## Planning a device map for a 1,000-layer model

            A synthetic Llama-shaped model with {layers} decoder layers ({tensors.Count:N0} tensors, {tensors.Sum(t => t.ByteLength) / 1e9:0} GB in float16).
            Timed: module tree and sizes, balancing, placement, cleaning, the per-device summary and the explanation log
            (`DeviceMapPlanner.Plan`). Goal: under 50 ms. CPU time per run is less sensitive to other load than wall time.

            | scenario | wall, median of {runs} | wall, best | process CPU per run | result |
            |---|---|---|---|---|
            {string.Join("\n", rows)}

            Drawing the uncleaned map ({tensors.Count:N0} entries) as SVG: {Measure.F(chartMs)} ms, {chart.Length / 1024} KiB.

            """;
    }

    private static List<TensorInfo> SyntheticLlama(int layers)
    {
        const int hidden = 4096, kv = 1024, inter = 11008, vocab = 32000;
        var list = new List<TensorInfo>();
        void Add(string name, params long[] shape) =>
            list.Add(new TensorInfo(name, DType.F16, shape, shape.Aggregate(1L, (a, d) => a * d) * 2, "synthetic.safetensors", 0));
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
}
