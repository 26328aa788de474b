using System.Globalization;
using BigModel.Errors;

namespace BigModel.Inference;

/// <summary>The kinds of place a placement can put weights.</summary>
public enum WeightLocationKind
{
    /// <summary>Resident in the memory of a CUDA device.</summary>
    Cuda,
    /// <summary>Held in host memory (pinned when CUDA is present) and brought to the execution device when used.</summary>
    Cpu,
    /// <summary>Left in the weight files and read (memory-mapped) when used.</summary>
    Disk,
}

/// <summary>
/// Where a placement puts a module's weights, parsed from Accelerate's spellings: <c>"cuda:N"</c> (or a bare GPU
/// index, as Accelerate's device maps allow), <c>"cpu"</c> and <c>"disk"</c>.
/// </summary>
public readonly record struct WeightLocation(WeightLocationKind Kind, int DeviceIndex)
{
    public static WeightLocation Cpu { get; } = new(WeightLocationKind.Cpu, -1);

    public static WeightLocation Disk { get; } = new(WeightLocationKind.Disk, -1);

    public static WeightLocation CudaDevice(int index) => new(WeightLocationKind.Cuda, index);

    /// <summary>The torch device string: <c>cuda:0</c>, <c>cpu</c>, or <c>disk</c>.</summary>
    public override string ToString() => Kind switch
    {
        WeightLocationKind.Cuda => "cuda:" + DeviceIndex.ToString(CultureInfo.InvariantCulture),
        WeightLocationKind.Cpu => "cpu",
        _ => "disk",
    };

    /// <summary>Parses one placement value; <paramref name="module"/> only names the entry in errors.</summary>
    public static WeightLocation Parse(string? text, string? module = null)
    {
        if (TryParse(text, out var location)) return location;
        var where = module is null ? "" : $" for '{(module.Length == 0 ? "(whole model)" : module)}'";
        throw new BigModelException(BigModelErrorCode.InvalidDevice,
            $"'{text}'{where} is not a device; use \"cuda:N\" (or a GPU index N), \"cpu\" or \"disk\".");
    }

    public static bool TryParse(string? text, out WeightLocation location)
    {
        location = default;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var t = text.Trim();
        if (t.Equals("cpu", StringComparison.OrdinalIgnoreCase)) { location = Cpu; return true; }
        if (t.Equals("disk", StringComparison.OrdinalIgnoreCase)) { location = Disk; return true; }
        if (t.Equals("cuda", StringComparison.OrdinalIgnoreCase)) { location = CudaDevice(0); return true; }
        var digits = t.StartsWith("cuda:", StringComparison.OrdinalIgnoreCase) ? t[5..] : t;
        if (digits.Length is > 0 and <= 4 && digits.All(char.IsAsciiDigit)
            && int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var index))
        {
            location = CudaDevice(index);
            return true;
        }
        return false;
    }
}
