using BigModel.Errors;
using BigModel.IO;

namespace BigModel.DeviceMaps;

/// <summary>A module (or tensor) and the device it was given.</summary>
public readonly record struct ModulePlacement(ModuleNode Module, Device Device);

/// <summary>What <see cref="AutoDeviceMap.Infer"/> decided, before the map is cleaned.</summary>
public sealed class AutoDeviceMapResult
{
    internal AutoDeviceMapResult(IReadOnlyList<ModulePlacement> placements, IReadOnlyDictionary<Device, long> memoryUsed,
        IReadOnlyDictionary<Device, long> reserved, IReadOnlyDictionary<Device, long> bufferBytes,
        IReadOnlyDictionary<Device, long> minimumAssignment, long largestLayerBytes, IReadOnlyList<string> largestLayers,
        IReadOnlyList<DeviceMapWarning> warnings)
    {
        Placements = placements;
        MemoryUsed = memoryUsed;
        Reserved = reserved;
        BufferBytes = bufferBytes;
        MinimumAssignment = minimumAssignment;
        LargestLayerBytes = largestLayerBytes;
        LargestLayers = largestLayers;
        Warnings = warnings;
    }

    /// <summary>Placements in the order they were made (tied modules right after the module that brought them).</summary>
    public IReadOnlyList<ModulePlacement> Placements { get; }

    /// <summary>Accelerate's device_memory_used: bytes placed plus the largest-layer reserve of main devices left behind; devices with 0 omitted.</summary>
    public IReadOnlyDictionary<Device, long> MemoryUsed { get; }

    /// <summary>Bytes kept free on a main device for the largest layer when planning moved past it.</summary>
    public IReadOnlyDictionary<Device, long> Reserved { get; }

    /// <summary>Buffer bytes of whole modules placed on each device (counted unless buffers are offloaded).</summary>
    public IReadOnlyDictionary<Device, long> BufferBytes { get; }

    /// <summary>Devices that received nothing, with the memory their first candidate needed.</summary>
    public IReadOnlyDictionary<Device, long> MinimumAssignment { get; }

    /// <summary>The largest layer at the start (get_max_layer_size).</summary>
    public long LargestLayerBytes { get; }

    public IReadOnlyList<string> LargestLayers { get; }

    /// <summary>Accelerate's warnings (buffers of offloaded modules that fit no GPU, devices left empty), with numbers.</summary>
    public IReadOnlyList<DeviceMapWarning> Warnings { get; }
}

/// <summary>
/// Accelerate's infer_auto_device_map on a <see cref="ModuleTree"/>: modules are taken in order and put on the first
/// device with room, GPUs first, then cpu, then disk; on main devices (the first GPU and the cpu, or mps) room for
/// the largest remaining layer is kept free so an offloaded layer can be brought in; a module that does not fit is
/// split into its parts unless it is a no-split block; tied tensors pull the modules holding them along.
/// </summary>
public static class AutoDeviceMap
{
    /// <summary>Runs the placement. <paramref name="log"/> receives one line per decision.</summary>
    /// <param name="tree">The model.</param>
    /// <param name="maxMemory">Budgets per device (already balanced when a balanced strategy is wanted).</param>
    /// <param name="offloadBuffers">Accelerate's offload_buffers: when false, buffers of offloaded modules are expected on the GPU.</param>
    /// <param name="fallbackAllocation">Accelerate's fallback_allocation: fill an otherwise empty device with any module that fits.</param>
    /// <param name="log">Receives the explanation of every decision.</param>
    public static AutoDeviceMapResult Infer(ModuleTree tree, MaxMemory maxMemory, bool offloadBuffers = false,
        bool fallbackAllocation = false, ICollection<string>? log = null)
    {
        var devices = maxMemory.Devices.ToList();
        if (!devices.Contains(Device.Disk)) devices.Add(Device.Disk);
        var gpus = devices.Where(d => !d.IsCpu && !d.IsDisk).ToList();
        Device[] main = gpus.Contains(Device.Mps) ? [Device.Mps] : gpus.Count > 0 ? [gpus[0], Device.Cpu] : [Device.Cpu];

        var root = tree.Root;
        var treat = new NodeQueue(root.SplitParts());
        var (maxLayerSize, maxLayers) = MaxLayer(treat, includeTensors: true);
        long initialLargest = maxLayerSize;
        var initialLargestNames = maxLayers.OrderBy(n => n.PreOrder).Select(n => n.Name).ToList();
        log?.Add($"Largest layer: {Describe(maxLayers)} ({Size(maxLayerSize)}); main devices ({string.Join(", ", main)}) keep room for the largest layer still to place, so an offloaded layer can be brought in.");

        var placements = new List<ModulePlacement>();
        var used = devices.ToDictionary(d => d, _ => 0L);
        var reservedOnLeave = new Dictionary<Device, long>();
        var bufferBytes = new Dictionary<Device, long>();
        var minimum = new Dictionary<Device, long>();
        var fallbackFound = new HashSet<(Device, ModuleNode)>();
        var tiedParams = new List<ModuleNode>();
        int current = 0;

        while (treat.Count > 0)
        {
            var node = treat.PopFront();
            // The largest layer still to place may change once this one is taken.
            RemoveInside(maxLayers, node, tree);
            if (maxLayers.Count == 0) (maxLayerSize, maxLayers) = MaxLayer(treat, includeTensors: false);

            long size = node.Size;
            CollectTiedOutside(tree.TiedGroups, node, tiedParams);
            var device = devices[current];
            long? limit = device.IsDisk ? null : maxMemory[device];
            long reserved = 0;
            if (limit is not null && Array.IndexOf(main, device) >= 0)
            {
                limit -= maxLayerSize;
                reserved = maxLayerSize;
            }
            var (sizeWithTies, tiedModules) = SizeWithTies(tiedParams, size, treat);

            if (limit is null || Add(used[device], sizeWithTies) <= limit)
            {
                used[device] = Add(used[device], sizeWithTies);
                placements.Add(new(node, device));
                foreach (var tied in tiedModules)
                {
                    treat.Remove(tied);
                    if (!placements.Exists(p => p.Module == tied)) placements.Add(new(tied, device));
                }
                if (!offloadBuffers && !node.IsTensor && node.BufferSize > 0)
                    bufferBytes[device] = Add(bufferBytes.GetValueOrDefault(device), node.BufferSize);
                log?.Add(PlacedLine(node, size, tiedModules, sizeWithTies, device, limit, used[device] - sizeWithTies, reserved));
                continue;
            }

            long available = limit.Value - used[device];
            if (tiedParams.Count > 0 && Add(used[device], size) <= limit)
            {
                // The module fits on its own but not with the modules its tied tensors live in: split one of those.
                ModuleNode? split = null;
                foreach (var tied in tiedModules)
                {
                    if (!tied.CanSplit) continue;
                    treat.ReplaceWith(tied, tied.SplitParts());
                    treat.PushFront(node);
                    (maxLayerSize, maxLayers) = MaxLayer(treat, includeTensors: false);
                    split = tied;
                    break;
                }
                if (split is not null)
                {
                    log?.Add($"{Name(node)} ({Size(size)}) fits on {device} alone but not with its tied {Names(tiedModules)} ({Size(sizeWithTies)} together, {Size(Math.Max(0, available))} available): splitting {Name(split)} into its {split.PartCount} parts.");
                    continue;
                }
                log?.Add($"{Name(node)} ({Size(size)}) fits on {device} alone but not with its tied {Names(tiedModules)} ({Size(sizeWithTies)} together, {Size(Math.Max(0, available))} available), and none of them can be split.");
            }

            if (Add(used[device], size) >= limit)
            {
                if (node.CanSplit)
                {
                    treat.PushFrontRange(node.SplitParts());
                    (maxLayerSize, maxLayers) = MaxLayer(treat, includeTensors: false);
                    log?.Add($"{Name(node)} ({Size(size)}) does not fit on {device} ({Size(Math.Max(0, available))} available): split into its {node.PartCount} parts.");
                    continue;
                }
            }

            if (used[device] == 0 && fallbackAllocation && !device.IsDisk)
            {
                long fallbackLimit = maxMemory[device] - Math.Max(maxLayerSize, sizeWithTies);
                var found = FallbackAllocate(treat, fallbackLimit, tree);
                // Accelerate would offer the same module forever when it then fails the regular check; once is enough.
                if (found is not null && fallbackFound.Add((device, found)))
                {
                    ExpandAncestors(treat, found);
                    treat.Remove(found);
                    treat.PushFront(node);
                    treat.PushFront(found);
                    log?.Add($"Nothing fits on {device} yet, so fallback allocation moves {Name(found)} ({Size(found.Size)}), which fits in {Size(fallbackLimit)}, ahead of {Name(node)}.");
                    continue;
                }
            }

            if (used[device] == 0) minimum[device] = Add(sizeWithTies, reserved);
            used[device] = Add(used[device], reserved);
            if (reserved > 0) reservedOnLeave[device] = reserved;
            var next = devices[current + 1];
            log?.Add(NotPlacedLine(node, size, tiedModules, sizeWithTies, device, available, next)
                + (reserved > 0 ? $" {Size(reserved)} stays free on {device} for the largest layer ({Describe(maxLayers)})." : ""));
            current++;
            treat.PushFront(node);
        }

        var warnings = new List<DeviceMapWarning>();
        var usedPositive = used.Where(e => e.Value > 0).ToDictionary(e => e.Key, e => e.Value);
        long offloadedBuffers = Add(bufferBytes.GetValueOrDefault(Device.Cpu), bufferBytes.GetValueOrDefault(Device.Disk));
        if (offloadedBuffers > 0 && !offloadBuffers)
        {
            bool fits = maxMemory.Any(e => !e.Key.IsCpu && !e.Key.IsDisk && e.Value >= Add(offloadedBuffers, usedPositive.GetValueOrDefault(e.Key)));
            if (gpus.Count > 0 && !fits)
                warnings.Add(new(BigModelErrorCode.OffloadedBuffersMayNotFit, $"The offloaded modules hold {Size(offloadedBuffers)} of buffers, which stay on the GPU while the model runs, and no GPU has that much left; if the run goes out of memory, offload the buffers too (Accelerate's offload_buffers=True)."));
        }
        foreach (var (device, bytes) in minimum)
            warnings.Add(new(BigModelErrorCode.DeviceLeftEmpty, $"No module could be placed on {device}: the first candidate needed {Size(bytes)} (including room kept for the largest layer) but {device} has {Size(maxMemory[device])}."));

        return new AutoDeviceMapResult(placements, usedPositive, reservedOnLeave, bufferBytes, minimum, initialLargest, initialLargestNames, warnings);
    }

    /// <summary>
    /// Accelerate's get_max_layer_size: the largest "layer" (tensor, module without submodules, or no-split block)
    /// reachable from <paramref name="entries"/> by expanding the other modules into their submodules, with every
    /// layer of that size.
    /// </summary>
    public static (long Size, HashSet<ModuleNode> Layers) MaxLayer(IEnumerable<ModuleNode> entries, bool includeTensors)
    {
        long max = 0;
        var layers = new HashSet<ModuleNode>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<ModuleNode>();
        foreach (var entry in entries)
        {
            if (entry.IsTensor && !includeTensors) continue;
            stack.Push(entry);
            while (stack.Count > 0)
            {
                var n = stack.Pop();
                if (n.IsLayer)
                {
                    if (n.Size > max)
                    {
                        max = n.Size;
                        layers.Clear();
                        layers.Add(n);
                    }
                    else if (n.Size == max) layers.Add(n);
                    continue;
                }
                for (int i = n.Modules.Count - 1; i >= 0; i--) stack.Push(n.Modules[i]);
            }
        }
        return (max, layers);
    }

    /// <summary>Drops <paramref name="node"/> and everything below it from the largest-layer set.</summary>
    private static void RemoveInside(HashSet<ModuleNode> layers, ModuleNode node, ModuleTree tree)
    {
        if (layers.Count <= node.SubtreeCount)
        {
            layers.RemoveWhere(node.Contains);
            return;
        }
        for (int i = node.PreOrder; i < node.PreOrder + node.SubtreeCount; i++) layers.Remove(tree.Nodes[i]);
    }

    /// <summary>
    /// Tensors tied to something inside <paramref name="node"/> but lying outside it, group by group. "Inside" is
    /// the subtree, which is what Accelerate's test <c>name + "." in k + "."</c> intends; as a substring test it
    /// would also match a module whose name merely contains the other's (module "1" inside "layers.1.weight").
    /// </summary>
    private static void CollectTiedOutside(IReadOnlyList<IReadOnlyList<ModuleNode>> groups, ModuleNode node, List<ModuleNode> into)
    {
        into.Clear();
        foreach (var group in groups)
        {
            int inside = 0;
            foreach (var m in group)
                if (node.Contains(m)) inside++;
            if (inside == 0 || inside == group.Count) continue;
            foreach (var m in group)
                if (!node.Contains(m)) into.Add(m);
        }
    }

    /// <summary>
    /// Accelerate's get_module_size_with_ties: the module's size plus, for each tied tensor outside it, the entry
    /// holding that tensor less the tensor itself (which the module already counts).
    /// </summary>
    private static (long Size, List<ModuleNode> Modules) SizeWithTies(List<ModuleNode> tiedParams, long size, NodeQueue queue)
    {
        if (tiedParams.Count == 0) return (size, []);
        var modules = new List<ModuleNode>(tiedParams.Count);
        long total = size;
        foreach (var p in tiedParams)
        {
            var holder = queue.EntryHolding(p);
            if (holder is null) continue;
            modules.Add(holder);
            total = Add(total, holder.Size - p.Size);
        }
        return (total, modules);
    }

    /// <summary>Accelerate's fallback_allocate: breadth-first search, splitting where allowed, for a module within <paramref name="limit"/>.</summary>
    private static ModuleNode? FallbackAllocate(NodeQueue treat, long limit, ModuleTree tree)
    {
        if (limit < 0) return null;
        var search = treat.Clone();
        var tied = new List<ModuleNode>();
        while (search.Count > 0)
        {
            var n = search.PopFront();
            CollectTiedOutside(tree.TiedGroups, n, tied);
            var (size, _) = SizeWithTies(tied, n.Size, search);
            if (size <= limit) return n;
            if (!n.CanSplit) continue;
            search.PushFrontRange(n.SplitParts());
        }
        return null;
    }

    /// <summary>Splits every ancestor of <paramref name="found"/> that is still an entry, outermost first, so it becomes an entry itself.</summary>
    private static void ExpandAncestors(NodeQueue treat, ModuleNode found)
    {
        var chain = new List<ModuleNode>();
        for (var a = found.Parent; a is not null && a.Parent is not null; a = a.Parent) chain.Add(a);
        for (int i = chain.Count - 1; i >= 0; i--)
            if (treat.Contains(chain[i])) treat.ReplaceWith(chain[i], chain[i].SplitParts());
    }

    private static long Add(long a, long b) => b >= 0 ? MaxMemory.SaturatingAdd(a, b) : a + b;

    private static string Size(long bytes) => ByteSize.Format(bytes);

    private static string Name(ModuleNode n) => n.Name.Length == 0 ? "the whole model" : n.Name;

    private static string Names(IEnumerable<ModuleNode> nodes) => string.Join(", ", nodes.Distinct().Select(Name));

    private static string Describe(HashSet<ModuleNode> layers)
    {
        if (layers.Count == 0) return "none";
        var ordered = layers.OrderBy(n => n.PreOrder).ToList();
        var head = string.Join(", ", ordered.Take(3).Select(Name));
        return ordered.Count > 3 ? $"{head} and {ordered.Count - 3} more" : head;
    }

    private static string PlacedLine(ModuleNode node, long size, List<ModuleNode> tied, long sizeWithTies, Device device, long? limit, long usedBefore, long reserved)
    {
        var what = tied.Count == 0 ? $"{Name(node)} ({Size(size)})" : $"{Name(node)} with its tied {Names(tied)} ({Size(sizeWithTies)} together)";
        if (limit is null) return $"{what} → {device}: no memory device had room.";
        var room = reserved > 0 ? $", {Size(reserved)} kept for the largest layer" : "";
        return $"{what} → {device}: fits ({Size(Math.Max(0, limit.Value - usedBefore))} available{room}).";
    }

    private static string NotPlacedLine(ModuleNode node, long size, List<ModuleNode> tied, long sizeWithTies, Device device, long available, Device next)
    {
        var what = tied.Count == 0 ? $"{Name(node)} ({Size(size)})" : $"{Name(node)} with its tied {Names(tied)} ({Size(sizeWithTies)} together)";
        var why = node.IsTensor ? "a single tensor cannot be split"
            : node.IsNoSplit ? "it is a no-split block"
            : node.Modules.Count == 0 ? "it has no submodules to split into"
            : "it fits whole but not with what it is tied to";
        return $"{what} does not fit on {device} ({Size(Math.Max(0, available))} available) and {why}: moving on to {next}.";
    }
}
