using System.Globalization;
using BigModel.Errors;

namespace BigModel.DeviceMaps;

/// <summary>What kind of place a module can live in, in Accelerate's placement order.</summary>
public enum DeviceKind
{
    /// <summary>An indexed accelerator (CUDA, or the XPU/NPU/MLU of machines where Accelerate numbers those).</summary>
    Gpu,
    /// <summary>Apple's Metal device, named "mps".</summary>
    Mps,
    /// <summary>An Intel GPU named "xpu" without an index.</summary>
    Xpu,
    Cpu,
    Disk,
}

/// <summary>
/// A device of a device map as Accelerate names it: GPU indices as numbers, then "mps", "xpu", "cpu" and "disk".
/// Comparison follows Accelerate's filling order (GPUs by index, then mps, xpu, cpu, disk).
/// </summary>
public readonly struct Device : IEquatable<Device>, IComparable<Device>
{
    /// <summary>Largest GPU index accepted; no machine has more, and it keeps arithmetic on indices safe.</summary>
    public const int MaxGpuIndex = 1 << 16;

    private Device(DeviceKind kind, int index)
    {
        Kind = kind;
        Index = index;
    }

    public DeviceKind Kind { get; }

    /// <summary>The GPU index; 0 for the other kinds.</summary>
    public int Index { get; }

    public static Device Cpu => new(DeviceKind.Cpu, 0);
    public static Device Disk => new(DeviceKind.Disk, 0);
    public static Device Mps => new(DeviceKind.Mps, 0);
    public static Device Xpu => new(DeviceKind.Xpu, 0);

    public static Device Gpu(int index)
    {
        if (index < 0 || index > MaxGpuIndex)
            throw new BigModelException(BigModelErrorCode.InvalidDevice, $"GPU index {index} is out of range (0..{MaxGpuIndex}).");
        return new Device(DeviceKind.Gpu, index);
    }

    public bool IsGpu => Kind == DeviceKind.Gpu;
    public bool IsCpu => Kind == DeviceKind.Cpu;
    public bool IsDisk => Kind == DeviceKind.Disk;

    /// <summary>True for GPUs, mps and xpu: the devices Accelerate fills before the CPU.</summary>
    public bool IsAccelerator => Kind is DeviceKind.Gpu or DeviceKind.Mps or DeviceKind.Xpu;

    /// <summary>The value Accelerate writes in a device map: the index (an int) for GPUs, the name otherwise.</summary>
    public object AccelerateValue => IsGpu ? Index : Name;

    /// <summary>Accelerate's key: "0", "1", "mps", "xpu", "cpu", "disk".</summary>
    public string Name => Kind switch
    {
        DeviceKind.Gpu => Index.ToString(CultureInfo.InvariantCulture),
        DeviceKind.Mps => "mps",
        DeviceKind.Xpu => "xpu",
        DeviceKind.Cpu => "cpu",
        _ => "disk",
    };

    /// <summary>The torch spelling for GPUs ("cuda:0"), the name otherwise.</summary>
    public override string ToString() => IsGpu ? "cuda:" + Index.ToString(CultureInfo.InvariantCulture) : Name;

    public bool Equals(Device other) => Kind == other.Kind && Index == other.Index;
    public override bool Equals(object? obj) => obj is Device d && Equals(d);
    public override int GetHashCode() => ((int)Kind << 20) ^ Index;
    public static bool operator ==(Device a, Device b) => a.Equals(b);
    public static bool operator !=(Device a, Device b) => !a.Equals(b);

    public int CompareTo(Device other)
    {
        int kind = Kind.CompareTo(other.Kind);
        return kind != 0 ? kind : Index.CompareTo(other.Index);
    }

    /// <summary>
    /// Reads a device as Accelerate, transformers and torch users write it: a GPU index ("0"), "cuda", "cuda:1",
    /// "gpu:1", the indexed spellings of other accelerators ("xpu:0", "npu:0", "mlu:0", "musa:0", "sdaa:0", "hpu"),
    /// "mps", "xpu", "cpu" or "disk". Case and surrounding blanks are ignored.
    /// </summary>
    public static bool TryParse(string? text, out Device device)
    {
        device = default;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var s = text.Trim().ToLowerInvariant();
        if (TryIndex(s, out var bare))
        {
            device = new Device(DeviceKind.Gpu, bare);
            return true;
        }
        switch (s)
        {
            case "cpu": device = Cpu; return true;
            case "disk": device = Disk; return true;
            case "mps" or "mps:0": device = Mps; return true;
            case "xpu": device = Xpu; return true;
            case "cuda" or "gpu" or "hpu": device = new Device(DeviceKind.Gpu, 0); return true;
        }
        int colon = s.IndexOf(':');
        if (colon <= 0) return false;
        var type = s[..colon];
        if (type is not ("cuda" or "gpu" or "xpu" or "npu" or "mlu" or "musa" or "sdaa" or "hpu")) return false;
        if (!TryIndex(s[(colon + 1)..], out var index)) return false;
        device = new Device(DeviceKind.Gpu, index);
        return true;
    }

    /// <summary>Like <see cref="TryParse(string?, out Device)"/>, throwing <see cref="BigModelErrorCode.InvalidDevice"/>.</summary>
    public static Device Parse(string? text, string? file = null)
    {
        if (TryParse(text, out var device)) return device;
        throw new BigModelException(BigModelErrorCode.InvalidDevice,
            $"'{text}' is not a device; use a GPU index (0, 1, ...), cuda:N, mps, xpu, cpu or disk.", file);
    }

    /// <summary>Reads a device given as a number (a GPU index) or as a string; PowerShell and JSON hand over either.</summary>
    public static Device FromObject(object? value, string? file = null) => value switch
    {
        Device d => d,
        int i => Gpu(i),
        long l when l is >= 0 and <= MaxGpuIndex => Gpu((int)l),
        short or byte or sbyte or ushort => Gpu(Convert.ToInt32(value, CultureInfo.InvariantCulture)),
        uint u when u <= MaxGpuIndex => Gpu((int)u),
        ulong u when u <= MaxGpuIndex => Gpu((int)u),
        double d when d >= 0 && d <= MaxGpuIndex && Math.Floor(d) == d => Gpu((int)d),
        string s => Parse(s, file),
        _ => throw new BigModelException(BigModelErrorCode.InvalidDevice,
            $"'{value}' is not a device; use a GPU index (0, 1, ...), cuda:N, mps, xpu, cpu or disk.", file),
    };

    private static bool TryIndex(string s, out int index)
    {
        index = 0;
        if (s.Length == 0 || s.Length > 6) return false;
        foreach (var c in s)
            if (!char.IsAsciiDigit(c)) return false;
        index = int.Parse(s, NumberStyles.None, CultureInfo.InvariantCulture);
        return index <= MaxGpuIndex;
    }
}
