using BigModel.IO;

namespace BigModel.DeviceMaps;

/// <summary>
/// Accelerate's get_balanced_memory: lowers the budgets of all GPUs but the last to about an equal share of the
/// model, plus a margin (1.25 × the larger of the first no-split block of each kind and the mean leaf-module size),
/// so <see cref="AutoDeviceMap"/> spreads the layers instead of filling GPU 0 first. The last GPU keeps its full
/// budget so that rounding never pushes a layer to the CPU. With <c>lowZero</c> GPU 0 gets only what the others
/// cannot hold.
/// </summary>
public static class BalancedMemory
{
    /// <param name="tree">The model.</param>
    /// <param name="maxMemory">Budgets to balance.</param>
    /// <param name="lowZero">balanced_low_0: keep GPU 0 as empty as possible.</param>
    /// <param name="detected">True when the budgets were measured rather than given: one GPU then keeps 10% free.</param>
    /// <param name="log">Receives the numbers behind the result.</param>
    public static MaxMemory Compute(ModuleTree tree, MaxMemory maxMemory, bool lowZero, bool detected, ICollection<string>? log = null)
    {
        var memory = maxMemory.ToDictionary(e => e.Key, e => e.Value);
        int numDevices = memory.Count(e => e.Key.IsGpu && e.Value > 0);
        if (numDevices == 0)
        {
            log?.Add("Balancing: no GPU has memory, so the budgets stay as they are.");
            return maxMemory;
        }
        if (numDevices == 1)
        {
            // balanced_low_0 needs a second GPU to move weights to.
            lowZero = false;
            if (detected)
            {
                var first = memory.Keys.Where(d => d.IsGpu).Min();
                long reduced = (long)Math.Floor(memory[first] * 0.9);
                log?.Add($"Balancing: the only GPU, {first}, gets 90% of its measured free memory ({Size(reduced)}), the rest left for activations.");
                memory[first] = reduced;
            }
        }

        var sizes = tree.ComputeModuleSizes();
        long total = sizes.GetValueOrDefault("");
        long perGpu = total / (lowZero ? numDevices - 1 : numDevices);

        long buffer = 0;
        if (tree.NoSplitRules.Count > 0)
        {
            var firstOfKind = new Dictionary<int, long>();
            foreach (var (name, size) in sizes)
            {
                if (name.Length == 0) continue;
                var node = tree.Find(name);
                if (node is null || node.IsTensor) continue;
                foreach (var rule in node.NoSplitRules) firstOfKind.TryAdd(rule, size);
                if (firstOfKind.Count == tree.NoSplitRules.Count) break;
            }
            if (firstOfKind.Count > 0) buffer = firstOfKind.Values.Max();
        }

        var withoutTensors = Without(sizes, Leaves(sizes.Keys));
        var leafModules = Leaves(withoutTensors.Keys);
        long leafSum = 0;
        foreach (var l in leafModules) leafSum = MaxMemory.SaturatingAdd(leafSum, withoutTensors[l]);
        long meanLeaves = (long)(leafSum / (double)Math.Max(leafModules.Count, 1));
        buffer = (long)(1.25 * Math.Max(buffer, meanLeaves));
        perGpu = MaxMemory.SaturatingAdd(perGpu, buffer);

        var gpuIds = memory.Where(e => e.Key.IsGpu && e.Value > 0).Select(e => e.Key).Order().ToList();
        var gpu0 = Device.Gpu(0);
        for (int i = 0; i < gpuIds.Count - 1; i++)
        {
            var id = gpuIds[i];
            memory[id] = Math.Min(lowZero && id == gpu0 ? memory[gpu0] : perGpu, memory[id]);
        }
        if (lowZero && memory.ContainsKey(gpu0))
        {
            long others = 0;
            for (int i = 1; i < numDevices; i++)
                if (memory.TryGetValue(Device.Gpu(i), out var m)) others = MaxMemory.SaturatingAdd(others, m);
            long minZero = Math.Max(0, total - others);
            memory[gpu0] = Math.Min(minZero, memory[gpu0]);
        }

        log?.Add($"Balancing over {numDevices} GPU(s): model {Size(total)}, share {Size(total / (lowZero ? numDevices - 1 : numDevices))} per GPU plus a margin of {Size(buffer)} (1.25 × the larger of the first no-split block and the mean leaf module, {Size(meanLeaves)}).");
        var result = MaxMemory.Create(memory, maxMemory.IsDetected);
        log?.Add($"Balanced budgets: {result}.");
        return result;
    }

    /// <summary>Accelerate's get_module_leaves: names with no child name in the set (the root excluded).</summary>
    private static List<string> Leaves(IEnumerable<string> names)
    {
        var list = names as IReadOnlyCollection<string> ?? names.ToList();
        var hasChild = new HashSet<string>(StringComparer.Ordinal);
        foreach (var name in list)
        {
            int dot = name.LastIndexOf('.');
            if (name.Length == 0 || dot < 0) continue;
            hasChild.Add(name[..dot]);
        }
        return list.Where(n => n.Length > 0 && !hasChild.Contains(n)).ToList();
    }

    private static Dictionary<string, long> Without(IReadOnlyDictionary<string, long> sizes, List<string> remove)
    {
        var drop = new HashSet<string>(remove, StringComparer.Ordinal);
        var result = new Dictionary<string, long>(sizes.Count, StringComparer.Ordinal);
        foreach (var (k, v) in sizes)
            if (!drop.Contains(k)) result[k] = v;
        return result;
    }

    private static string Size(long bytes) => ByteSize.Format(bytes);
}
