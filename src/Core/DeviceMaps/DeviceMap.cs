using System.Globalization;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.IO;

namespace BigModel.DeviceMaps;

/// <summary>
/// Which device each module of a model lives on — the dictionary transformers' <c>from_pretrained(device_map=...)</c>
/// and Accelerate's <c>dispatch_model</c> take — with, when it was planned here, the sizes behind it, the budget,
/// a per-device summary, the explanation of every decision and the warnings.
/// </summary>
public sealed class DeviceMap
{
    private readonly Dictionary<string, DeviceMapEntry> _byModule;

    internal DeviceMap(IReadOnlyList<DeviceMapEntry> entries, string? source)
    {
        Entries = entries;
        Source = source;
        _byModule = new Dictionary<string, DeviceMapEntry>(entries.Count, StringComparer.Ordinal);
        foreach (var e in entries)
            if (!_byModule.TryAdd(e.Module, e))
                throw new BigModelException(BigModelErrorCode.InvalidDeviceMap, $"module '{e.Module}' is given twice.", source);
        Devices = Summarise(entries, null, null, null);
    }

    /// <summary>The map's keys in order (forward order for a planned map, file order for one read from JSON).</summary>
    public IReadOnlyList<DeviceMapEntry> Entries { get; }

    public int Count => Entries.Count;

    /// <summary>Where the map came from: the checkpoint planned for, or the JSON file read.</summary>
    public string? Source { get; private init; }

    /// <summary>Per device: bytes used and granted, the modules, the share of the model; in Accelerate's device order.</summary>
    public IReadOnlyList<DeviceUsage> Devices { get; private set; }

    /// <summary>The budgets planning worked with (after reserve and balancing); null for a map read from JSON.</summary>
    public MaxMemory? Budget { get; private init; }

    /// <summary>The budgets as given or measured, before reserve and balancing.</summary>
    public MaxMemory? RequestedBudget { get; private init; }

    public DeviceMapStrategy? Strategy { get; private init; }

    /// <summary>The largest layer when planning started, and the layers of that size.</summary>
    public long? LargestLayerBytes { get; private init; }

    public IReadOnlyList<string> LargestLayers { get; private init; } = [];

    /// <summary>Tied tensor groups the plan kept together.</summary>
    public IReadOnlyList<IReadOnlyList<string>> TiedParameters { get; private init; } = [];

    /// <summary>Every planning decision, one sentence each, for -Verbose.</summary>
    public IReadOnlyList<string> Log { get; private init; } = [];

    /// <summary>Things a user should know: offloading, buffers that may not fit, tied tensors apart, with numbers.</summary>
    public IReadOnlyList<string> Warnings { get; private init; } = [];

    /// <summary>True when every entry has a size.</summary>
    public bool HasSizes => Entries.All(e => e.Bytes is not null);

    /// <summary>Total bytes of the model (null when sizes are unknown).</summary>
    public long? TotalBytes => HasSizes ? Entries.Sum(e => e.Bytes!.Value) : null;

    /// <summary>Bytes on cpu and disk when the plan has accelerators; bytes on disk otherwise. Null when sizes are unknown.</summary>
    public long? OffloadedBytes => HasSizes ? Devices.Where(d => d.IsOffload).Sum(d => d.UsedBytes ?? 0) : null;

    /// <summary><see cref="OffloadedBytes"/> as a fraction of <see cref="TotalBytes"/>.</summary>
    public double? OffloadedShare => TotalBytes is > 0 and var t ? (double)OffloadedBytes!.Value / t : HasSizes ? 0 : null;

    /// <summary>True when any module lands on disk.</summary>
    public bool UsesDisk => Entries.Any(e => e.Device.IsDisk);

    /// <summary>True when any module lands on cpu or disk although accelerators are part of the plan, or on disk at all.</summary>
    public bool IsOffloaded => Devices.Any(d => d.IsOffload && d.Modules.Count > 0);

    /// <summary>The device of a key of the map, exactly as written.</summary>
    public Device this[string module] => _byModule.TryGetValue(module, out var e)
        ? e.Device
        : throw new BigModelException(BigModelErrorCode.InvalidDeviceMap, $"the device map has no key '{module}'.", Source);

    /// <summary>
    /// The device of a tensor or module: its own key, else the nearest enclosing module's, else "" (Accelerate's
    /// _get_param_device); null when the map does not cover it.
    /// </summary>
    public Device? DeviceOf(string name)
    {
        var key = name;
        while (true)
        {
            if (_byModule.TryGetValue(key, out var e)) return e.Device;
            if (key.Length == 0) return null;
            int dot = key.LastIndexOf('.');
            key = dot < 0 ? "" : key[..dot];
        }
    }

    /// <summary>
    /// The device of every tensor, as loading needs it. Tensors no key covers are an error listing them (Accelerate's
    /// check_device_map).
    /// </summary>
    public IReadOnlyDictionary<string, Device> AssignTensors(IEnumerable<string> tensorNames)
    {
        var result = new Dictionary<string, Device>(StringComparer.Ordinal);
        var missing = new List<string>();
        foreach (var name in tensorNames)
        {
            if (DeviceOf(name) is Device d) result[name] = d;
            else missing.Add(name);
        }
        if (missing.Count > 0)
            throw new BigModelException(BigModelErrorCode.DeviceMapUncoveredTensors,
                $"the device map gives no device for {missing.Count} tensor(s): {string.Join(", ", missing.Take(10))}{(missing.Count > 10 ? ", ..." : "")}.", Source);
        return result;
    }

    /// <summary>Keys that cover none of <paramref name="tensorNames"/> (a map written for another model, or a typo).</summary>
    public IReadOnlyList<string> UnusedKeys(IEnumerable<string> tensorNames)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var name in tensorNames)
        {
            var key = name;
            while (true)
            {
                if (_byModule.ContainsKey(key))
                {
                    used.Add(key);
                    break;
                }
                if (key.Length == 0) break;
                int dot = key.LastIndexOf('.');
                key = dot < 0 ? "" : key[..dot];
            }
        }
        return Entries.Select(e => e.Module).Where(k => !used.Contains(k)).ToList();
    }

    /// <summary>
    /// Accelerate's check_tied_parameters_on_same_device: one warning per group of tied tensors spread over several
    /// devices (they share one storage, so all but one copy would be wasted or wrong).
    /// </summary>
    public IReadOnlyList<string> CheckTiedParameters(IEnumerable<IReadOnlyList<string>> groups)
    {
        var warnings = new List<string>();
        foreach (var group in groups)
        {
            var devices = group.Select(p => (Name: p, Device: DeviceOf(p))).ToList();
            if (devices.Select(d => d.Device).Distinct().Count() > 1)
                warnings.Add($"Tied parameters are on different devices: {string.Join(", ", devices.Select(d => $"{d.Name} on {(d.Device is Device x ? x.ToString() : "no device")}"))}; they share one storage and belong on one device.");
        }
        return warnings;
    }

    /// <summary>This map with subtrees on one device collapsed (Accelerate's clean_device_map).</summary>
    public DeviceMap Clean()
    {
        var cleaned = DeviceMapCleaner.Clean(Entries.Select(e => new KeyValuePair<string, Device>(e.Module, e.Device)));
        var sizes = Entries.ToDictionary(e => e.Module, e => e.Bytes, StringComparer.Ordinal);
        var entries = cleaned.Select(c => new DeviceMapEntry(c.Key, c.Value, SizeOfKey(c.Key, sizes))).ToList();
        return With(entries);
    }

    /// <summary>
    /// This map with sizes measured on <paramref name="tensors"/> (a map read from JSON gains its per-device summary).
    /// <paramref name="dtype"/> shrinks float tensors as planning does.
    /// </summary>
    public DeviceMap Measure(IEnumerable<TensorInfo> tensors, DType? dtype = null)
    {
        var list = tensors.ToList();
        AssignTensors(list.Select(t => t.Name));
        var bytes = Entries.ToDictionary(e => e.Module, _ => 0L, StringComparer.Ordinal);
        foreach (var t in list)
        {
            var key = CoveringKey(t.Name)!;
            bytes[key] = MaxMemory.SaturatingAdd(bytes[key], ModuleTree.TensorBytes(t, dtype));
        }
        return With(Entries.Select(e => e with { Bytes = bytes[e.Module] }).ToList());
    }

    /// <summary>The same measurement on a checkpoint's tensors.</summary>
    public DeviceMap Measure(Checkpoint checkpoint, DType? dtype = null) => Measure(checkpoint.Tensors, dtype);

    /// <summary>
    /// Throws when the plan spills: <see cref="BigModelErrorCode.ModelDoesNotFit"/> when anything lands on disk,
    /// <see cref="BigModelErrorCode.OffloadedToSlowerDevice"/> when anything lands on cpu although GPUs are part of the
    /// plan (unless <paramref name="allowCpu"/>). The message carries the bytes, the share and the modules.
    /// </summary>
    public void ThrowIfOffloaded(bool allowCpu = false)
    {
        var disk = Devices.FirstOrDefault(d => d.Device.IsDisk && d.Modules.Count > 0);
        var cpu = allowCpu ? null : Devices.FirstOrDefault(d => d.Device.IsCpu && d.IsOffload && d.Modules.Count > 0);
        if (disk is null && cpu is null) return;
        var parts = new List<string>();
        foreach (var d in new[] { disk, cpu })
            if (d is not null) parts.Add(Describe(d));
        var budget = Budget is null ? "" : $" Granted: {Budget}.";
        if (disk is not null)
            throw new BigModelException(BigModelErrorCode.ModelDoesNotFit,
                $"the model does not fit in the memory granted: {string.Join("; ", parts)}.{budget}", Source);
        throw new BigModelException(BigModelErrorCode.OffloadedToSlowerDevice,
            $"part of the model is offloaded from the GPUs: {string.Join("; ", parts)}.{budget}", Source);
    }

    private string Describe(DeviceUsage d)
    {
        var modules = string.Join(", ", d.Modules.Take(5)) + (d.Modules.Count > 5 ? $" and {d.Modules.Count - 5} more" : "");
        if (d.UsedBytes is long used && TotalBytes is long total)
            return $"{ByteSize.Format(used)} ({used} bytes, {Percent(used, total)} of {ByteSize.Format(total)}) on {d.Device}: {modules}";
        return $"{d.Modules.Count} module(s) on {d.Device}: {modules}";
    }

    /// <summary>
    /// The map as the inference engine takes it: module name → "cuda:N", "cpu" or "disk" (a key covers its module and
    /// everything below it, "" the whole model).
    /// </summary>
    public IReadOnlyDictionary<string, string> ToPlacement() =>
        Entries.ToDictionary(e => e.Module, e => e.Device.ToString(), StringComparer.Ordinal);

    /// <summary>The map as Accelerate and transformers read it: <c>{"model.embed_tokens": 0, ..., "lm_head": "cpu"}</c>.</summary>
    public string ToJson(bool indented = true) => DeviceMapJson.Write(this, indented);

    /// <summary>Writes <see cref="ToJson"/> to <paramref name="path"/>.</summary>
    public void Save(string path)
    {
        try
        {
            File.WriteAllText(path, ToJson() + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, path, inner: e);
        }
    }

    /// <summary>
    /// Reads a device map as Accelerate/transformers write it: an object of module name to device, devices as GPU
    /// indices (numbers, or strings of digits), "cuda:N", "mps", "xpu", "cpu", "disk", or other accelerators' indexed names.
    /// </summary>
    public static DeviceMap FromJson(string json, string? source = null) => DeviceMapJson.Read(json, source);

    /// <summary>Reads <see cref="FromJson"/> from a file.</summary>
    public static DeviceMap Load(string path) => DeviceMapJson.Load(path);

    /// <summary>A map from pairs, as written; sizes unknown.</summary>
    public static DeviceMap FromEntries(IEnumerable<KeyValuePair<string, Device>> entries, string? source = null) =>
        new(entries.Select(e => new DeviceMapEntry(e.Key, e.Value, null)).ToList(), source);

    internal static DeviceMap Planned(IReadOnlyList<DeviceMapEntry> entries, string? source, MaxMemory budget, MaxMemory requested,
        IReadOnlyDictionary<Device, long> reserved, DeviceMapStrategy strategy, long largestLayer, IReadOnlyList<string> largestLayers,
        IReadOnlyList<IReadOnlyList<string>> tied, IReadOnlyList<string> log, IReadOnlyList<string> warnings)
    {
        var map = new DeviceMap(entries, source)
        {
            Budget = budget,
            RequestedBudget = requested,
            Strategy = strategy,
            LargestLayerBytes = largestLayer,
            LargestLayers = largestLayers,
            TiedParameters = tied,
            Log = log,
            Warnings = warnings,
        };
        map.Devices = Summarise(entries, budget, requested, reserved);
        return map;
    }

    private DeviceMap With(IReadOnlyList<DeviceMapEntry> entries)
    {
        var map = new DeviceMap(entries, Source)
        {
            Budget = Budget,
            RequestedBudget = RequestedBudget,
            Strategy = Strategy,
            LargestLayerBytes = LargestLayerBytes,
            LargestLayers = LargestLayers,
            TiedParameters = TiedParameters,
            Log = Log,
            Warnings = Warnings,
        };
        map.Devices = Summarise(entries, Budget, RequestedBudget, Devices.ToDictionary(d => d.Device, d => d.ReservedBytes));
        return map;
    }

    private string? CoveringKey(string name)
    {
        var key = name;
        while (true)
        {
            if (_byModule.ContainsKey(key)) return key;
            if (key.Length == 0) return null;
            int dot = key.LastIndexOf('.');
            key = dot < 0 ? "" : key[..dot];
        }
    }

    /// <summary>Size of a cleaned key: the sum of the original keys it replaced (unknown if any of them is).</summary>
    private static long? SizeOfKey(string key, Dictionary<string, long?> sizes)
    {
        if (sizes.TryGetValue(key, out var own) && own is not null && !sizes.Keys.Any(k => IsBelow(k, key))) return own;
        long total = 0;
        foreach (var (k, v) in sizes)
        {
            if (k != key && !IsBelow(k, key)) continue;
            if (v is null) return null;
            total = MaxMemory.SaturatingAdd(total, v.Value);
        }
        return total;
    }

    private static bool IsBelow(string name, string module) =>
        module.Length == 0 ? name.Length > 0 : name.Length > module.Length && name[module.Length] == '.' && name.StartsWith(module, StringComparison.Ordinal);

    private static IReadOnlyList<DeviceUsage> Summarise(IReadOnlyList<DeviceMapEntry> entries, MaxMemory? budget, MaxMemory? requested,
        IReadOnlyDictionary<Device, long>? reserved)
    {
        var devices = new SortedSet<Device>(entries.Select(e => e.Device));
        if (budget is not null)
            foreach (var d in budget.Devices) devices.Add(d);
        bool sized = entries.All(e => e.Bytes is not null);
        long total = sized ? entries.Sum(e => e.Bytes!.Value) : 0;
        bool accelerators = entries.Any(e => e.Device.IsAccelerator) || (budget?.Any(b => b.Key.IsAccelerator && b.Value > 0) ?? false);
        var list = new List<DeviceUsage>(devices.Count);
        foreach (var device in devices)
        {
            var on = entries.Where(e => e.Device == device).ToList();
            long? used = sized ? on.Sum(e => e.Bytes!.Value) : null;
            long? granted = budget is not null && budget.TryGet(device, out var g) ? g : null;
            long? asked = requested is not null && requested.TryGet(device, out var r) ? r : null;
            double? share = sized ? (total > 0 ? (double)used!.Value / total : 0) : null;
            bool offload = device.IsDisk || (device.IsCpu && accelerators);
            list.Add(new DeviceUsage(device, used, granted, asked, reserved?.GetValueOrDefault(device) ?? 0, on.Select(e => e.Module).ToList(), share, offload));
        }
        return list;
    }

    internal static string Percent(long part, long whole) =>
        (whole > 0 ? 100.0 * part / whole : 0).ToString("0.#", CultureInfo.InvariantCulture) + "%";

    public override string ToString()
    {
        var parts = Devices.Where(d => d.Modules.Count > 0).Select(d => d.UsedBytes is long u ? $"{d.Device} {ByteSize.Format(u)}" : $"{d.Device} {d.Modules.Count} module(s)");
        return $"{Count} entries: {string.Join(", ", parts)}" + (OffloadedBytes is long o && o > 0 && TotalBytes is long t ? $"; {Percent(o, t)} offloaded" : "");
    }
}
