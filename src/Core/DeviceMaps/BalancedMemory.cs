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

        var sized = tree.SizedNodes();
        long total = tree.TotalBytes;
        long perGpu = total / (lowZero ? numDevices - 1 : numDevices);

        // The first module of each no-split kind, in compute_module_sizes order.
        long buffer = 0;
        if (tree.NoSplitRules.Count > 0)
        {
            var firstOfKind = new Dictionary<int, long>();
            foreach (var node in sized)
            {
                if (node.IsTensor || node.Parent is null) continue;
                foreach (var rule in node.NoSplitRules) firstOfKind.TryAdd(rule, node.Size);
                if (firstOfKind.Count == tree.NoSplitRules.Count) break;
            }
            if (firstOfKind.Count > 0) buffer = firstOfKind.Values.Max();
        }

        // get_module_leaves twice: the first leaves are the tensors; once they are dropped, the leaves are the
        // modules none of whose submodules has a size.
        var hasSizedSubmodule = new bool[tree.Nodes.Count];
        foreach (var node in sized)
            if (!node.IsTensor && node.Parent is { Parent: not null } parent) hasSizedSubmodule[parent.PreOrder] = true;
        long leafSum = 0;
        int leafCount = 0;
        foreach (var node in sized)
        {
            if (node.IsTensor || node.Parent is null || hasSizedSubmodule[node.PreOrder]) continue;
            leafSum = MaxMemory.SaturatingAdd(leafSum, node.Size);
            leafCount++;
        }
        long meanLeaves = (long)(leafSum / (double)Math.Max(leafCount, 1));
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

    private static string Size(long bytes) => ByteSize.Format(bytes);
}
