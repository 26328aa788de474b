using BigModel.Checkpoints;

namespace BigModel.Bench;

/// <summary>
/// Opening a 100-shard checkpoint: the index, then every shard's header (no tensor data). The goal is well under
/// 100 ms in-process, so listing or sizing a huge checkpoint is instant.
/// </summary>
public sealed class IndexReadBenchmark : IBenchmark
{
    public string Name => "index";

    public string Run(BenchContext context)
    {
        const int shards = 100, layersPerShard = 4;
        var folder = context.Scratch("index-100-shards");
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        int tensorCount = 0;
        if (!File.Exists(Path.Combine(folder, "model.safetensors.index.json")))
        {
            for (int s = 0; s < shards; s++)
            {
                var name = $"model-{s + 1:D5}-of-{shards:D5}.safetensors";
                var specs = new List<TensorSpec>();
                for (int l = 0; l < layersPerShard; l++)
                {
                    int layer = s * layersPerShard + l;
                    foreach (var proj in new[] { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" })
                        specs.Add(new TensorSpec($"model.layers.{layer}.{proj}.weight", DType.BF16, [8, 8]));
                    specs.Add(new TensorSpec($"model.layers.{layer}.input_layernorm.weight", DType.BF16, [8]));
                    specs.Add(new TensorSpec($"model.layers.{layer}.post_attention_layernorm.weight", DType.BF16, [8]));
                }
                var layout = SafetensorsLayout.Create(specs, new Dictionary<string, string> { ["format"] = "pt" });
                using (var writer = new SafetensorsWriter(Path.Combine(folder, name), layout))
                {
                    writer.Write(new byte[layout.DataLength]);
                    writer.Complete();
                }
                foreach (var spec in specs) weightMap[spec.Name] = name;
            }
            var json = System.Text.Json.JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = weightMap });
            File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), json);
        }
        var first = Measure.Repeat(1, () => tensorCount = Checkpoint.Open(folder).Tensors.Count);
        var warm = Measure.Repeat(context.Quick ? 5 : 30, () => Checkpoint.Open(folder));
        return $"""
            ## Opening a 100-shard checkpoint

            `Checkpoint.Open` on a folder with `model.safetensors.index.json` and {shards} shards ({tensorCount} tensors):
            the index is parsed, every shard's path is checked to stay inside the folder, every shard's header is read and
            validated, and every weight_map entry is matched to its shard. No tensor data is read. Goal: well under 100 ms.

            | run | time |
            |---|---|
            | first open in the process (JIT included) | {Measure.F(first.MedianMs)} ms |
            | warm, median of {warm.Runs} | {Measure.F(warm.MedianMs)} ms (min {Measure.F(warm.MinMs)}, max {Measure.F(warm.MaxMs)}) |

            """;
    }
}
