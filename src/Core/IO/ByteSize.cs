using System.Globalization;
using BigModel.Errors;

namespace BigModel.IO;

/// <summary>
/// Byte sizes as people and Python tools write them. Parsing follows Accelerate's convert_file_size_to_int:
/// KB/MB/GB/TB are decimal (5GB = 5,000,000,000), KiB/MiB/GiB/TiB binary (5GiB = 5 × 2^30), fractions are allowed
/// ("1.5GB"), and a decimal unit ending in a lower-case b counts bits ("8Mb" = 1,000,000 bytes). A bare number, or a
/// number with B, is bytes.
/// </summary>
public static class ByteSize
{
    private static readonly (string Unit, decimal Factor, bool Decimal)[] Units =
    [
        ("PIB", 1L << 50, false), ("TIB", 1L << 40, false), ("GIB", 1L << 30, false), ("MIB", 1L << 20, false), ("KIB", 1L << 10, false),
        ("PB", 1_000_000_000_000_000, true), ("TB", 1_000_000_000_000, true), ("GB", 1_000_000_000, true), ("MB", 1_000_000, true), ("KB", 1_000, true),
        ("B", 1, false),
    ];

    /// <summary>Parses a size or throws <see cref="BigModelErrorCode.InvalidSize"/>.</summary>
    public static long Parse(string text, string? what = null)
    {
        if (TryParse(text, out var bytes)) return bytes;
        throw new BigModelException(BigModelErrorCode.InvalidSize,
            $"{(what is null ? "" : what + ": ")}'{text}' is not a size; use bytes (1048576) or a number with a unit: KB, MB, GB, TB (decimal) or KiB, MiB, GiB, TiB (binary), e.g. 5GB or 1.5GiB.");
    }

    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var s = text.Trim();
        decimal factor = 1;
        foreach (var (unit, f, isDecimal) in Units)
        {
            if (!s.EndsWith(unit, StringComparison.OrdinalIgnoreCase)) continue;
            factor = f;
            // Accelerate reads "5Mb" as megabits.
            if (isDecimal && s[^1] == 'b') factor /= 8;
            s = s[..^unit.Length].TrimEnd();
            break;
        }
        if (s.Length == 0 || !decimal.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number)) return false;
        decimal value;
        try { value = decimal.Floor(number * factor); }
        catch (OverflowException) { return false; }
        if (value > long.MaxValue) return false;
        bytes = (long)value;
        return true;
    }

    /// <summary>Human form with binary units and two decimals, e.g. "1.25 GiB"; plain bytes below 1 KiB.</summary>
    public static string Format(long bytes)
    {
        string[] names = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        double value = Math.Abs((double)bytes);
        if (value < 1024) return bytes.ToString(CultureInfo.InvariantCulture) + " B";
        int unit = -1;
        while (value >= 1024 && unit < names.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        return (bytes < 0 ? "-" : "") + value.ToString("0.00", CultureInfo.InvariantCulture) + " " + names[unit];
    }
}
