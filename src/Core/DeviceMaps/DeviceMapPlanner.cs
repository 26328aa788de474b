using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.IO;

namespace BigModel.DeviceMaps;

/// <summary>
/// Plans a device map the way transformers' <c>from_pretrained(device_map="auto")</c> does with Accelerate:
/// budgets (given, or measured), reserve, get_balanced_memory for the balanced strategies, infer_auto_device_map,
/// clean_device_map, and the tied-parameter check — on a checkpoint's tensors instead of a model on the meta device.
/// </summary>
public static class DeviceMapPlanner
{
    /// <summary>
    /// Plans for a checkpoint: its tensors in forward order, its architecture's no-split blocks and ties.
    /// <paramref name="family"/> overrides the architecture detected (for a checkpoint without config.json), and then
    /// also decides the forward order.
    /// </summary>
    public static DeviceMap Plan(Checkpoint checkpoint, DeviceMapOptions? options = null, ArchitectureSpec? family = null)
    {
        var tensors = family is null ? checkpoint.Tensors : TensorOrder.Sort(checkpoint.Tensors, family);
        return Plan(tensors, family ?? checkpoint.Architecture, checkpoint.Config, options, checkpoint.Path);
    }

    /// <summary>
    /// Plans for what <paramref name="path"/> names: a config.json (or any model config, see
    /// <see cref="ModelConfig.IsConfigFile"/>) is planned from its config alone, anything else is opened as a checkpoint.
    /// </summary>
    public static DeviceMap Plan(string path, DeviceMapOptions? options = null, ArchitectureSpec? family = null)
    {
        var full = System.IO.Path.GetFullPath(path);
        return ModelConfig.IsConfigFile(full)
            ? PlanFromConfig(ModelConfig.Load(full), options, family)
            : Plan(Checkpoint.Open(full), options, family);
    }

    /// <summary>
    /// Plans for a list of tensors, taken in the order given (pass them in forward order, as
    /// <see cref="Checkpoint.Tensors"/> holds them, or sort them with <see cref="TensorOrder"/>).
    /// </summary>
    /// <param name="tensors">The model's tensors.</param>
    /// <param name="architecture">The family, for no-split blocks and the tied head; null when unknown.</param>
    /// <param name="config">config.json, for tie_word_embeddings and the head architecture.</param>
    /// <param name="options">Budgets, strategy, patterns, dtype.</param>
    /// <param name="source">What the tensors come from, for messages.</param>
    public static DeviceMap Plan(IReadOnlyList<TensorInfo> tensors, ArchitectureSpec? architecture = null, ModelConfig? config = null,
        DeviceMapOptions? options = null, string? source = null)
    {
        options ??= new DeviceMapOptions();
        if (options.Reserve < 0)
            throw new BigModelException(BigModelErrorCode.InvalidSize, $"the reserve is negative ({options.Reserve} bytes).");
        var log = new List<string>();
        var tree = BuildTree(tensors, architecture, config, options, log);

        bool detected = options.MaxMemory is null;
        MaxMemory requested;
        if (options.MaxMemory is { } given) requested = given;
        else
        {
            var notes = new List<string>();
            requested = options.DetectMemory is { } detect ? detect(notes) : MaxMemory.Detect(notes);
            log.Add("No memory budget was given, so this machine's free memory is the budget:");
            log.AddRange(notes.Select(n => "  " + n));
        }
        log.Add($"Budget: {(requested.Count == 0 ? "nothing" : requested.ToString())}{(requested.Contains(Device.Disk) ? "" : "; disk takes whatever remains")}.");
        bool cpuOmitted = !detected && !requested.Contains(Device.Cpu);
        if (cpuOmitted)
            log.Add("cpu is not in the budget, so no module is planned for RAM: what does not fit on the GPUs goes to disk, as in Accelerate.");

        var budget = requested;
        if (options.Reserve > 0)
        {
            budget = MaxMemory.Create(requested.Select(e => e.Key.IsDisk ? e : new KeyValuePair<Device, long>(e.Key, Math.Max(0, e.Value - options.Reserve))), requested.IsDetected);
            log.Add($"Reserve: {ByteSize.Format(options.Reserve)} held back on every device but disk, leaving {budget}.");
        }
        if (options.Strategy == DeviceMapStrategy.Sequential)
            log.Add("Strategy sequential: each device is filled up to its budget before the next.");
        else
        {
            log.Add($"Strategy {options.Strategy.ToAccelerateName()}: budgets are balanced over the GPUs first (get_balanced_memory).");
            budget = BalancedMemory.Compute(tree, budget, options.Strategy == DeviceMapStrategy.BalancedLow0, detected, log);
        }

        var result = AutoDeviceMap.Infer(tree, budget, options.OffloadBuffers, options.FallbackAllocation, log);

        var placements = result.Placements.OrderBy(p => p.Module.PreOrder)
            .Select(p => new KeyValuePair<string, Device>(p.Module.Name, p.Device)).ToList();
        var keys = options.Clean ? DeviceMapCleaner.Clean(placements) : placements;
        var entries = keys.Select(k => new DeviceMapEntry(k.Key, k.Value, tree.Find(k.Key)?.Size ?? 0)).ToList();
        var tiedNames = tree.TiedGroups.Select(g => (IReadOnlyList<string>)g.Select(n => n.Name).ToList()).ToList();

        var warnings = new List<DeviceMapWarning>();
        var draft = DeviceMap.FromEntries(keys);
        warnings.AddRange(draft.CheckTiedParameters(tiedNames));
        warnings.AddRange(SpillWarnings(entries, tree.TotalBytes, budget, result.LargestLayerBytes, cpuOmitted));
        warnings.AddRange(result.Warnings);

        log.Add($"Result: {string.Join(", ", entries.GroupBy(e => e.Device).OrderBy(g => g.Key).Select(g => $"{g.Key} {ByteSize.Format(g.Sum(e => e.Bytes ?? 0))} in {g.Count()} entr{(g.Count() == 1 ? "y" : "ies")}"))}.");
        return DeviceMap.Planned(entries, source, budget, requested, result.Reserved, options.Strategy, result.LargestLayerBytes,
            result.LargestLayers, tiedNames, log, warnings);
    }

    /// <summary>
    /// Plans from config.json alone, for a model not downloaded yet: the tensors its architecture implies
    /// (<see cref="ArchitectureSpec.SizedTensorsFromConfig"/>). <paramref name="family"/> overrides the family the
    /// config names.
    /// </summary>
    public static DeviceMap PlanFromConfig(ModelConfig config, DeviceMapOptions? options = null, ArchitectureSpec? family = null)
    {
        var spec = family ?? ArchitectureCatalog.Require(config);
        return Plan(spec.SizedTensorsFromConfig(config), spec, config, options, config.Path);
    }

    /// <summary>
    /// The module tree planning works on: the architecture's no-split blocks plus the user's patterns, the tied head
    /// plus the user's groups, buffers recognised by name.
    /// </summary>
    public static ModuleTree BuildTree(IReadOnlyList<TensorInfo> tensors, ArchitectureSpec? architecture = null, ModelConfig? config = null,
        DeviceMapOptions? options = null, ICollection<string>? log = null)
    {
        options ??= new DeviceMapOptions();
        var rules = new List<NoSplitRule>();
        if (options.UseArchitectureNoSplit && architecture is not null) rules.AddRange(NoSplitRule.FromArchitecture(architecture));
        foreach (var pattern in options.NoSplit) rules.Add(NoSplitRule.FromGlob(pattern));

        var tied = new List<IReadOnlyList<string>>();
        bool tie = options.TieWordEmbeddings ?? architecture?.TiesWordEmbeddings(config) ?? false;
        if (tie && architecture is not null)
        {
            var names = new HashSet<string>(tensors.Select(t => t.Name), StringComparer.Ordinal);
            tied.AddRange(ArchitectureTies.For(architecture, config, names));
        }
        tied.AddRange(options.TiedParameters);

        var buffers = options.BufferNames.Count == 0 ? null : new HashSet<string>(options.BufferNames, StringComparer.Ordinal);
        var tree = ModuleTree.Build(tensors, new ModuleTreeOptions
        {
            DType = options.DType,
            SpecialDTypes = options.SpecialDTypes,
            NoSplit = rules,
            TiedParameters = tied,
            IsBuffer = buffers is null ? null : name => buffers.Contains(name) || ModuleTree.IsWellKnownBuffer(name),
        });

        if (log is not null)
        {
            log.Add($"Model: {tensors.Count} tensors, {ByteSize.Format(tree.TotalBytes)} ({tree.TotalBytes} bytes){(options.DType is DType d ? $" with float tensors counted as {d.TorchName()} at most" : "")}.");
            log.Add(rules.Count == 0 ? "No-split blocks: none; any module may be split." : $"No-split blocks: {string.Join("; ", rules.Select(r => r.Description))}.");
            foreach (var group in tree.TiedGroups)
                log.Add($"Tied: {string.Join(" = ", group.Select(n => n.Name))} share one storage and go to one device.");
            foreach (var note in tree.Notes) log.Add(note);
        }
        return tree;
    }

    private static IEnumerable<DeviceMapWarning> SpillWarnings(List<DeviceMapEntry> entries, long total, MaxMemory budget, long largestLayer, bool cpuOmitted)
    {
        long Sum(Func<Device, bool> which) => entries.Where(e => which(e.Device)).Sum(e => e.Bytes ?? 0);
        long disk = Sum(d => d.IsDisk);
        long cpu = Sum(d => d.IsCpu);
        long granted = budget.MemoryBytes;
        bool accelerators = budget.Any(e => e.Key.IsAccelerator && e.Value > 0);
        if (disk > 0)
            yield return new(BigModelErrorCode.ModelDoesNotFit, $"The model does not fit without disk: {ByteSize.Format(disk)} ({disk} bytes, {DeviceMap.Percent(disk, total)} of {ByteSize.Format(total)}) is offloaded to disk. "
                + $"Memory granted: {ByteSize.Format(granted)} ({Describe(budget)}); the model needs {ByteSize.Format(total)} plus {ByteSize.Format(largestLayer)} kept free for its largest layer on each main device."
                + (cpuOmitted ? " cpu is not in the budget: grant RAM (cpu=...) to keep these modules in memory." : ""));
        if (cpu > 0 && accelerators)
        {
            long gpuBudget = budget.Where(e => e.Key.IsAccelerator).Sum(e => e.Value);
            yield return new(BigModelErrorCode.OffloadedToSlowerDevice, $"{ByteSize.Format(cpu)} ({cpu} bytes, {DeviceMap.Percent(cpu, total)} of the model) is offloaded to cpu: the accelerators' budgets total {ByteSize.Format(gpuBudget)} for a model of {ByteSize.Format(total)}.");
        }
        if (budget.TryGet(Device.Disk, out var diskBudget) && disk > diskBudget)
            yield return new(BigModelErrorCode.MemoryBudgetExceeded, $"Disk offload needs {ByteSize.Format(disk)} but the disk budget is {ByteSize.Format(diskBudget)}; Accelerate does not limit disk, so the plan exceeds it.");
    }

    private static string Describe(MaxMemory budget) =>
        budget.Count == 0 ? "no device" : string.Join(", ", budget.Where(e => !e.Key.IsDisk).Select(e => $"{e.Key} {ByteSize.Format(e.Value)}"));
}
