using BigModel.Checkpoints;

namespace BigModel.Tests.Support;

/// <summary>Writes safetensors checkpoints with deterministic random contents for tests.</summary>
public static class CheckpointFiles
{
    /// <summary>Writes one safetensors file holding <paramref name="tensors"/>, filled with bytes from <paramref name="seed"/>; returns the data.</summary>
    public static Dictionary<string, byte[]> WriteSafetensors(string path, IEnumerable<TensorSpec> tensors, int seed = 1,
        IReadOnlyDictionary<string, string>? metadata = null, Func<TensorSpec, byte[]>? fill = null)
    {
        var random = new Random(seed);
        var specs = tensors.ToList();
        var data = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var spec in specs)
        {
            var bytes = fill?.Invoke(spec) ?? RandomBytes(random, spec);
            data[spec.Name] = bytes;
        }
        var layout = SafetensorsLayout.Create(specs, metadata ?? new Dictionary<string, string> { ["format"] = "pt" });
        using var writer = new SafetensorsWriter(path, layout);
        foreach (var (spec, _) in layout.Tensors) writer.Write(data[spec.Name]);
        writer.Complete();
        return data;
    }

    /// <summary>
    /// Writes a sharded checkpoint: the tensors are dealt round-robin into <paramref name="shards"/> files plus an
    /// index, as some exporters do (so a shard's tensors are not contiguous in forward order).
    /// </summary>
    public static Dictionary<string, byte[]> WriteSharded(string folder, IReadOnlyList<TensorSpec> tensors, int shards, int seed = 1)
    {
        Directory.CreateDirectory(folder);
        var all = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var map = new List<KeyValuePair<string, string>>();
        for (int s = 0; s < shards; s++)
        {
            var file = $"model-{s + 1:D5}-of-{shards:D5}.safetensors";
            var part = tensors.Where((_, i) => i % shards == s).ToList();
            foreach (var (k, v) in WriteSafetensors(Path.Combine(folder, file), part, seed + s)) all[k] = v;
            map.AddRange(part.Select(t => new KeyValuePair<string, string>(t.Name, file)));
        }
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"),
            BigModel.Sharding.ShardIndexJson.Serialize(all.Values.Sum(v => (long)v.Length), map));
        return all;
    }

    /// <summary>Random bytes: for float tensors every bit pattern, NaNs and subnormals included, is fair game.</summary>
    public static byte[] RandomBytes(Random random, TensorSpec spec)
    {
        var bytes = new byte[spec.ByteLength];
        random.NextBytes(bytes);
        return bytes;
    }

    /// <summary>A small Llama-style model's tensors: embeddings, layers, norm and head, of several dtypes.</summary>
    public static List<TensorSpec> LlamaLike(int layers, int hidden, DType dtype = DType.F32, int vocab = 64)
    {
        var specs = new List<TensorSpec> { new("model.embed_tokens.weight", dtype, [vocab, hidden]) };
        for (int i = 0; i < layers; i++)
        {
            var p = $"model.layers.{i}.";
            specs.Add(new(p + "self_attn.q_proj.weight", dtype, [hidden, hidden]));
            specs.Add(new(p + "self_attn.k_proj.weight", dtype, [hidden, hidden]));
            specs.Add(new(p + "self_attn.v_proj.weight", dtype, [hidden, hidden]));
            specs.Add(new(p + "self_attn.o_proj.weight", dtype, [hidden, hidden]));
            specs.Add(new(p + "mlp.gate_proj.weight", dtype, [2 * hidden, hidden]));
            specs.Add(new(p + "mlp.up_proj.weight", dtype, [2 * hidden, hidden]));
            specs.Add(new(p + "mlp.down_proj.weight", dtype, [hidden, 2 * hidden]));
            specs.Add(new(p + "input_layernorm.weight", dtype, [hidden]));
            specs.Add(new(p + "post_attention_layernorm.weight", dtype, [hidden]));
        }
        specs.Add(new("model.norm.weight", dtype, [hidden]));
        specs.Add(new("lm_head.weight", dtype, [vocab, hidden]));
        return specs;
    }
}
