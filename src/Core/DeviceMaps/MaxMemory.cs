using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;
using BigModel.Errors;
using BigModel.IO;
using BigModel.Memory;

namespace BigModel.DeviceMaps;

/// <summary>
/// Memory granted per device, in bytes, kept in Accelerate's device order (GPU indices ascending, then mps, xpu,
/// cpu, disk) as get_max_memory arranges it. Devices need not exist on this machine: a plan for a two-GPU server
/// can be made anywhere.
/// </summary>
public sealed class MaxMemory : IReadOnlyList<KeyValuePair<Device, long>>
{
    private readonly KeyValuePair<Device, long>[] _entries;

    private MaxMemory(KeyValuePair<Device, long>[] sorted, bool detected)
    {
        _entries = sorted;
        IsDetected = detected;
    }

    /// <summary>True when the figures were measured on this machine rather than given.</summary>
    public bool IsDetected { get; }

    public int Count => _entries.Length;

    public KeyValuePair<Device, long> this[int index] => _entries[index];

    /// <summary>The devices, in filling order.</summary>
    public IReadOnlyList<Device> Devices => _entries.Select(e => e.Key).ToArray();

    public bool Contains(Device device) => Array.FindIndex(_entries, e => e.Key == device) >= 0;

    public bool TryGet(Device device, out long bytes)
    {
        int i = Array.FindIndex(_entries, e => e.Key == device);
        bytes = i >= 0 ? _entries[i].Value : 0;
        return i >= 0;
    }

    /// <summary>The budget of <paramref name="device"/>; an error naming the known devices when it has none.</summary>
    public long this[Device device] => TryGet(device, out var b)
        ? b
        : throw new BigModelException(BigModelErrorCode.InvalidDevice, $"no memory is granted on {device}; the budget names {string.Join(", ", Devices)}.");

    /// <summary>Sum of every budget except disk's.</summary>
    public long MemoryBytes => _entries.Where(e => !e.Key.IsDisk).Aggregate(0L, (a, e) => SaturatingAdd(a, e.Value));

    /// <summary>Builds a budget; a device given twice (say 0 and "cuda:0") or a negative size is an error.</summary>
    public static MaxMemory Create(IEnumerable<KeyValuePair<Device, long>> entries, bool detected = false)
    {
        var seen = new Dictionary<Device, long>();
        foreach (var (device, bytes) in entries)
        {
            if (bytes < 0)
                throw new BigModelException(BigModelErrorCode.InvalidSize, $"the memory granted on {device} is negative ({bytes} bytes).");
            if (!seen.TryAdd(device, bytes))
                throw new BigModelException(BigModelErrorCode.DeviceMapDuplicateDevice, $"{device} is given twice in the memory budget.");
        }
        return new MaxMemory(seen.OrderBy(e => e.Key).ToArray(), detected);
    }

    /// <summary>Parses pairs such as ("0", "10GiB"), ("cuda:1", "8GB"), ("cpu", "30GiB").</summary>
    public static MaxMemory Parse(IEnumerable<KeyValuePair<string, string>> entries) =>
        Create(entries.Select(e => new KeyValuePair<Device, long>(Device.Parse(e.Key), ByteSize.Parse(e.Value, $"memory for {e.Key}"))));

    /// <summary>
    /// Reads a dictionary whose keys are devices (numbers or strings) and whose values are byte counts (numbers) or
    /// size strings ("10GiB"), as a PowerShell hashtable <c>@{ 0 = '10GiB'; 'cuda:1' = 8GB; cpu = '30GiB' }</c> holds them.
    /// </summary>
    public static MaxMemory FromDictionary(IDictionary table)
    {
        var list = new List<KeyValuePair<Device, long>>(table.Count);
        foreach (DictionaryEntry entry in table)
        {
            var device = Device.FromObject(Unwrap(entry.Key));
            list.Add(new(device, SizeFromObject(Unwrap(entry.Value), device)));
        }
        return Create(list);
    }

    /// <summary>
    /// Parses the compact forms build files and command lines use: <c>0=10GiB;cuda:1=8GB;cpu=30GiB</c> (separated by
    /// ';' or ','), or Accelerate's JSON object when the text starts with '{'.
    /// </summary>
    public static MaxMemory ParseText(string text)
    {
        var trimmed = text.Trim();
        if (trimmed.StartsWith('{')) return FromJson(trimmed);
        var pairs = new List<KeyValuePair<string, string>>();
        foreach (var part in trimmed.Split([';', ','], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = part.IndexOf('=');
            if (eq <= 0 || eq == part.Length - 1)
                throw new BigModelException(BigModelErrorCode.InvalidArgument, $"'{part}' is not device=size (for example cpu=30GiB).");
            pairs.Add(new(part[..eq].Trim(), part[(eq + 1)..].Trim()));
        }
        return Parse(pairs);
    }

    /// <summary>Reads Accelerate's max_memory written as JSON: <c>{"0": "10GiB", "1": 8000000000, "cpu": "30GiB"}</c>.</summary>
    public static MaxMemory FromJson(string json, string? file = null)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw new BigModelException(BigModelErrorCode.InvalidArgument, $"the memory budget is not valid JSON: {e.Message}", file, inner: e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new BigModelException(BigModelErrorCode.InvalidArgument, "the memory budget must be a JSON object of device: size.", file);
            var list = new List<KeyValuePair<Device, long>>();
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                var device = Device.Parse(p.Name, file);
                long bytes = p.Value.ValueKind switch
                {
                    JsonValueKind.Number when p.Value.TryGetInt64(out var n) && n >= 0 => n,
                    JsonValueKind.Number when p.Value.TryGetDouble(out var d) && d >= 0 && d < long.MaxValue => (long)Math.Floor(d),
                    JsonValueKind.String => ByteSize.Parse(p.Value.GetString()!, $"memory for {device}"),
                    _ => throw new BigModelException(BigModelErrorCode.InvalidSize, $"the memory for {device} must be a byte count or a size string such as \"10GiB\".", file),
                };
                list.Add(new(device, bytes));
            }
            return Create(list);
        }
    }

    /// <summary>
    /// What this machine has free, as Accelerate's get_max_memory measures it without arguments: free memory of each
    /// CUDA device TorchSharp can use, and available RAM for cpu (cgroup limits honoured).
    /// </summary>
    /// <param name="notes">Receives how each figure was obtained.</param>
    /// <param name="probeGpus">False skips CUDA (and so never loads libtorch).</param>
    public static MaxMemory Detect(ICollection<string>? notes = null, bool probeGpus = true)
    {
        var list = new List<KeyValuePair<Device, long>>();
        if (probeGpus)
        {
            foreach (var gpu in CudaMemory.Devices(notes))
            {
                list.Add(new(Device.Gpu(gpu.Index), gpu.FreeBytes));
                notes?.Add($"cuda:{gpu.Index}: {ByteSize.Format(gpu.FreeBytes)} free of {ByteSize.Format(gpu.TotalBytes)}.");
            }
        }
        var ram = SystemMemory.Read();
        list.Add(new(Device.Cpu, ram.AvailableBytes));
        notes?.Add($"cpu: {ByteSize.Format(ram.AvailableBytes)} available ({ram.Source}).");
        return Create(list, detected: true);
    }

    /// <summary>This budget with <paramref name="device"/> set to <paramref name="bytes"/>.</summary>
    public MaxMemory With(Device device, long bytes) =>
        Create(_entries.Where(e => e.Key != device).Append(new(device, bytes)), IsDetected);

    /// <summary>Accelerate's max_memory dictionary as JSON, GPU keys as strings of their index.</summary>
    public string ToJson()
    {
        var sb = new StringBuilder("{");
        for (int i = 0; i < _entries.Length; i++)
        {
            if (i > 0) sb.Append(", ");
            sb.Append('"').Append(_entries[i].Key.Name).Append("\": ").Append(_entries[i].Value.ToString(CultureInfo.InvariantCulture));
        }
        return sb.Append('}').ToString();
    }

    public override string ToString() => string.Join(", ", _entries.Select(e => $"{e.Key}={ByteSize.Format(e.Value)}"));

    public IEnumerator<KeyValuePair<Device, long>> GetEnumerator() => ((IEnumerable<KeyValuePair<Device, long>>)_entries).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    internal static long SaturatingAdd(long a, long b) => a > long.MaxValue - b ? long.MaxValue : a + b;

    /// <summary>PowerShell wraps values in PSObject; its BaseObject property holds the value itself.</summary>
    private static object? Unwrap(object? value)
    {
        if (value is null) return null;
        var type = value.GetType();
        if (type.FullName == "System.Management.Automation.PSObject")
            return type.GetProperty("BaseObject")?.GetValue(value);
        return value;
    }

    private static long SizeFromObject(object? value, Device device) => value switch
    {
        int i when i >= 0 => i,
        long l when l >= 0 => l,
        uint or ushort or short or byte or sbyte when Convert.ToInt64(value, CultureInfo.InvariantCulture) >= 0 => Convert.ToInt64(value, CultureInfo.InvariantCulture),
        ulong u when u <= long.MaxValue => (long)u,
        double d when d >= 0 && d < long.MaxValue => (long)Math.Floor(d),
        float f when f >= 0 && f < long.MaxValue => (long)Math.Floor(f),
        decimal m when m >= 0 && m < long.MaxValue => (long)decimal.Floor(m),
        string s => ByteSize.Parse(s, $"memory for {device}"),
        _ => throw new BigModelException(BigModelErrorCode.InvalidSize,
            $"the memory for {device} ('{value}') must be a non-negative byte count or a size string such as '10GiB'."),
    };
}
