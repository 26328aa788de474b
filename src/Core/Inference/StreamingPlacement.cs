using BigModel.Checkpoints;
using BigModel.DeviceMaps;

namespace BigModel.Inference;

/// <summary>
/// Chooses which blocks stream from disk when a model computed on the CPU does not fit in host memory. Accelerate's
/// sequential fill keeps the first blocks resident and sends the rest to disk, the output head included; for a run
/// that streams the offloaded part every token, that is the costliest choice twice over: the input embedding table
/// is kept resident although a token reads one row of it, and the head, usually the largest block, sets the size
/// of every block in flight. Here the same host budget is spent so that the fewest bytes are read from disk per
/// token: input embedding tables (row lookups) go to disk first, blocks larger than the chosen streaming size stay
/// resident, and the staging window is sized by the largest block that streams.
/// </summary>
internal static class StreamingPlacement
{
    /// <summary>Names (last parts) of input embedding tables the engines only look rows up in.</summary>
    private static readonly string[] InputEmbeddings = ["embed_tokens.weight", "word_embeddings.weight"];

    /// <summary>
    /// A placement of <paramref name="planned"/>'s modules (an uncleaned cpu/disk map with sizes) within
    /// <paramref name="budget"/> host bytes that reads fewer bytes from disk per token, or null when none does.
    /// </summary>
    /// <param name="planned">The planner's map: cpu and disk only, one entry per block, sizes known.</param>
    /// <param name="checkpoint">The model, for the tensors each module holds.</param>
    /// <param name="budget">Host bytes weights and the staging window may take.</param>
    /// <param name="windowBlocks">Blocks in flight at once (the computing one and the prefetched ones).</param>
    /// <param name="dtype">Dtype the weights will be computed in (the sizes of the returned map).</param>
    public static DeviceMap? Improve(DeviceMap planned, Checkpoint checkpoint, long budget, int windowBlocks, DType? dtype = null)
    {
        if (!planned.HasSizes || planned.Entries.Any(e => !e.Device.IsDisk && e.Device != Device.Cpu)) return null;
        var lookups = LookupOnlyModules(planned, checkpoint);
        var modules = planned.Entries.Select(e => (e.Module, Bytes: e.Bytes!.Value, Lookup: lookups.Contains(e.Module))).ToList();
        var dense = modules.Where(m => !m.Lookup).ToList();

        (long Streamed, HashSet<string> Resident)? best = null;
        foreach (long largest in dense.Select(m => m.Bytes).Where(b => b > 0).Distinct())
        {
            long room = budget - windowBlocks * largest - dense.Where(m => m.Bytes > largest).Sum(m => m.Bytes);
            if (room < 0) continue;
            var resident = dense.Where(m => m.Bytes > largest).Select(m => m.Module).ToHashSet(StringComparer.Ordinal);
            foreach (var m in dense.Where(m => m.Bytes <= largest))
            {
                if (m.Bytes > room) continue;
                resident.Add(m.Module);
                room -= m.Bytes;
            }
            long streamed = dense.Where(m => !resident.Contains(m.Module)).Sum(m => m.Bytes);
            if (best is null || streamed < best.Value.Streamed) best = (streamed, resident);
        }
        long plannedStreamed = planned.Entries.Where(e => e.Device.IsDisk).Sum(e => e.Bytes!.Value)
            - modules.Where(m => m.Lookup && planned[m.Module].IsDisk).Sum(m => m.Bytes);
        if (best is not { } chosen || chosen.Streamed >= plannedStreamed) return null;
        var entries = modules.Select(m => new KeyValuePair<string, Device>(m.Module, chosen.Resident.Contains(m.Module) ? Device.Cpu : Device.Disk));
        return DeviceMap.FromEntries(entries, "streaming placement").Measure(checkpoint, dtype);
    }

    /// <summary>
    /// The map's modules made only of untied input embedding tables: a token reads one row of each, so on disk they
    /// cost nothing. A decoder's table is untied only when the checkpoint has a head of its own (else the head
    /// multiplies by it). Only modules covering such a table are looked at closely: the tables are few.
    /// </summary>
    private static HashSet<string> LookupOnlyModules(DeviceMap planned, Checkpoint checkpoint)
    {
        var tied = planned.TiedParameters.Where(g => g.Count > 1).SelectMany(g => g).ToHashSet(StringComparer.Ordinal);
        bool ownHead = checkpoint.Find("lm_head.weight") is not null;
        var tables = checkpoint.Tensors.Select(t => t.Name)
            .Where(n => !tied.Contains(n) && InputEmbeddings.Any(e => (n == e || n.EndsWith("." + e, StringComparison.Ordinal)) && (e != "embed_tokens.weight" || ownHead)))
            .ToHashSet(StringComparer.Ordinal);
        return planned.Entries.Select(e => e.Module)
            .Where(m => tables.Any(n => Covers(m, n)) && checkpoint.Tensors.Where(t => Covers(m, t.Name)).All(t => tables.Contains(t.Name)))
            .ToHashSet(StringComparer.Ordinal);
    }

    private static bool Covers(string module, string tensor) =>
        module.Length == 0 || tensor == module || tensor.StartsWith(module + ".", StringComparison.Ordinal);
}
