using System.Globalization;
using BigModel.Checkpoints;

namespace BigModel.Fixtures.Synthetic;

/// <summary>
/// How tensors are split into shard files, greedily as transformers' save_pretrained does: tensors in forward order,
/// a new shard whenever the next tensor would push the current one past the limit, a tensor larger than the limit
/// alone in its own shard. Unlike save_pretrained, the current shard is closed before such a tensor rather than
/// continued after it, so shard files follow the forward order and a sequential pass reads them in turn.
/// One shard is written as model.safetensors with no index.
/// </summary>
public sealed class ShardPlan
{
    private ShardPlan(IReadOnlyList<(string File, IReadOnlyList<TensorSpec> Tensors)> shards) => Shards = shards;

    public IReadOnlyList<(string File, IReadOnlyList<TensorSpec> Tensors)> Shards { get; }

    public bool IsSharded => Shards.Count > 1;

    public long TotalSize => Shards.Sum(s => s.Tensors.Sum(t => t.ByteLength));

    /// <param name="ordered">Tensors in forward order.</param>
    /// <param name="maxShardSize">Bytes per shard, or null for a single file.</param>
    public static ShardPlan Create(IReadOnlyList<TensorSpec> ordered, long? maxShardSize)
    {
        var groups = new List<List<TensorSpec>>();
        if (maxShardSize is not long max)
        {
            groups.Add([.. ordered]);
        }
        else
        {
            var current = new List<TensorSpec>();
            long size = 0;
            foreach (var t in ordered)
            {
                long bytes = t.ByteLength;
                if (current.Count > 0 && size + bytes > max)
                {
                    groups.Add(current);
                    current = [];
                    size = 0;
                }
                current.Add(t);
                size += bytes;
                if (size > max)
                {
                    groups.Add(current);
                    current = [];
                    size = 0;
                }
            }
            if (current.Count > 0) groups.Add(current);
        }
        if (groups.Count == 1) return new ShardPlan([("model.safetensors", groups[0])]);
        int n = groups.Count;
        return new ShardPlan(groups.Select((g, i) =>
            (string.Create(CultureInfo.InvariantCulture, $"model-{i + 1:D5}-of-{n:D5}.safetensors"), (IReadOnlyList<TensorSpec>)g)).ToList());
    }
}
