using System.Globalization;
using BigModel.Errors;

namespace BigModel.Sharding;

/// <summary>One entry of a state dict to be placed in a shard: its name, its size in bytes, and optionally the identity
/// of the storage it shares with other entries (entries with equal ids are stored together and counted once).</summary>
public readonly record struct ShardCandidate(string Name, long Size, object? StorageId = null);

/// <summary>A file of a split and the tensor names it receives, in the order they were assigned.</summary>
public sealed record ShardAssignment(string FileName, IReadOnlyList<string> Tensors);

/// <summary>The outcome of <see cref="ShardPlanner.Split"/>: huggingface_hub's StateDictSplit.</summary>
public sealed class ShardSplit
{
    internal ShardSplit(IReadOnlyList<ShardAssignment> shards, IReadOnlyList<KeyValuePair<string, string>> tensorToFile, long totalSize)
    {
        Shards = shards;
        TensorToFile = tensorToFile;
        TotalSize = totalSize;
    }

    /// <summary>Files in shard order.</summary>
    public IReadOnlyList<ShardAssignment> Shards { get; }

    /// <summary>Tensor name → file name, in the order huggingface_hub builds it (shard by shard).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> TensorToFile { get; }

    /// <summary>The index's metadata.total_size: every storage counted once.</summary>
    public long TotalSize { get; }

    /// <summary>More than one file, so an index is written.</summary>
    public bool IsSharded => Shards.Count > 1;
}

/// <summary>
/// huggingface_hub's greedy shard split (<c>split_state_dict_into_shards_factory</c>), reproduced exactly: tensors are
/// taken in the given order; a tensor larger than the limit gets a shard of its own, appended at once (ahead of the
/// shard still being filled); otherwise the current shard is closed when the tensor would push it over the limit.
/// Entries sharing a storage follow the first of them into its shard and count once toward the total. One shard is
/// named <c>model.safetensors</c>; several are <c>model-00001-of-00003.safetensors</c> and so on.
/// </summary>
public static class ShardPlanner
{
    /// <summary>huggingface_hub's FILENAME_PATTERN; <c>{suffix}</c> is empty for one shard, else <c>-00001-of-00004</c>.</summary>
    public const string DefaultFilePattern = "model{suffix}.safetensors";

    /// <summary>huggingface_hub's MAX_SHARD_SIZE (5GB, decimal), the default limit.</summary>
    public const long DefaultMaxShardSize = 5_000_000_000;

    public static ShardSplit Split(IEnumerable<ShardCandidate> tensors, long maxShardSize, string filePattern = DefaultFilePattern)
    {
        if (maxShardSize <= 0)
            throw new BigModelException(BigModelErrorCode.InvalidSize, $"the maximum shard size must be at least one byte, not {maxShardSize}.");
        if (!filePattern.Contains("{suffix}", StringComparison.Ordinal))
            throw new BigModelException(BigModelErrorCode.InvalidArgument, $"the file pattern '{filePattern}' has no {{suffix}} placeholder.");

        var order = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var storageGroups = new Dictionary<object, List<string>>();
        var groupOrder = new List<List<string>>();
        var shards = new List<List<string>>();
        var current = new List<string>();
        long currentSize = 0, totalSize = 0;

        foreach (var tensor in tensors)
        {
            if (!seen.Add(tensor.Name))
                throw new BigModelException(BigModelErrorCode.InvalidArgument, "the tensor name appears twice.", tensor: tensor.Name);
            if (tensor.Size < 0)
                throw new BigModelException(BigModelErrorCode.InvalidArgument, $"the tensor size {tensor.Size} is negative.", tensor: tensor.Name);
            order.Add(tensor.Name);

            if (tensor.StorageId is { } storage)
            {
                if (storageGroups.TryGetValue(storage, out var group))
                {
                    // Placed later, into the shard of the first tensor on this storage.
                    group.Add(tensor.Name);
                    continue;
                }
                var created = new List<string> { tensor.Name };
                storageGroups[storage] = created;
                groupOrder.Add(created);
            }

            if (tensor.Size > maxShardSize)
            {
                totalSize = checked(totalSize + tensor.Size);
                shards.Add([tensor.Name]);
                continue;
            }
            if (currentSize + tensor.Size > maxShardSize)
            {
                shards.Add(current);
                current = [];
                currentSize = 0;
            }
            current.Add(tensor.Name);
            currentSize += tensor.Size;
            totalSize = checked(totalSize + tensor.Size);
        }
        if (current.Count > 0) shards.Add(current);

        // Python dicts keep a key's first position when it is assigned again; the shards are lists, so skip repeats.
        foreach (var group in groupOrder)
        {
            var home = shards.FirstOrDefault(s => s.Contains(group[0]));
            if (home is null) continue;
            foreach (var name in group)
                if (!home.Contains(name)) home.Add(name);
        }

        if (shards.Count == 1)
        {
            var single = ShardFileName(filePattern, 0, 1);
            return new ShardSplit([new ShardAssignment(single, order)],
                order.Select(n => new KeyValuePair<string, string>(n, single)).ToList(), totalSize);
        }
        var assignments = new List<ShardAssignment>(shards.Count);
        var map = new List<KeyValuePair<string, string>>(order.Count);
        for (int i = 0; i < shards.Count; i++)
        {
            var file = ShardFileName(filePattern, i, shards.Count);
            assignments.Add(new ShardAssignment(file, shards[i]));
            foreach (var name in shards[i]) map.Add(new(name, file));
        }
        return new ShardSplit(assignments, map, totalSize);
    }

    /// <summary>The file name of shard <paramref name="index"/> (zero-based) of <paramref name="count"/>.</summary>
    public static string ShardFileName(string filePattern, int index, int count)
    {
        var suffix = count == 1 ? ""
            : string.Create(CultureInfo.InvariantCulture, $"-{index + 1:D5}-of-{count:D5}");
        return filePattern.Replace("{suffix}", suffix, StringComparison.Ordinal);
    }
}
