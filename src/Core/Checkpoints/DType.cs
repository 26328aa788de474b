using BigModel.Errors;

namespace BigModel.Checkpoints;

/// <summary>
/// Element types of the safetensors specification. The declaration order is the specification's alignment
/// order, which writers use to sort tensors (descending dtype, then name), so it must not be changed.
/// </summary>
public enum DType
{
    BOOL,
    F4,
    F6_E2M3,
    F6_E3M2,
    U8,
    I8,
    F8_E5M2,
    F8_E4M3,
    F8_E8M0,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    C64,
    F64,
    I64,
    U64,
}

/// <summary>Facts about <see cref="DType"/> values: sizes, names in safetensors and in torch.</summary>
public static class DTypes
{
    /// <summary>Bits per element.</summary>
    public static int Bits(this DType dtype) => dtype switch
    {
        DType.BOOL or DType.U8 or DType.I8 or DType.F8_E5M2 or DType.F8_E4M3 or DType.F8_E8M0 => 8,
        DType.F4 => 4,
        DType.F6_E2M3 or DType.F6_E3M2 => 6,
        DType.I16 or DType.U16 or DType.F16 or DType.BF16 => 16,
        DType.I32 or DType.U32 or DType.F32 => 32,
        DType.C64 or DType.F64 or DType.I64 or DType.U64 => 64,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>True for the floating-point types that dtype conversion and "-DType" shrinking apply to.</summary>
    public static bool IsFloatingPoint(this DType dtype) => dtype is DType.F16 or DType.BF16 or DType.F32 or DType.F64
        or DType.F8_E4M3 or DType.F8_E5M2 or DType.F8_E8M0 or DType.F4 or DType.F6_E2M3 or DType.F6_E3M2;

    /// <summary>The safetensors spelling ("F32").</summary>
    public static string SafetensorsName(this DType dtype) => dtype.ToString();

    /// <summary>The torch spelling ("float32"), as config.json's torch_dtype and Python users write it.</summary>
    public static string TorchName(this DType dtype) => dtype switch
    {
        DType.BOOL => "bool",
        DType.U8 => "uint8",
        DType.I8 => "int8",
        DType.I16 => "int16",
        DType.U16 => "uint16",
        DType.I32 => "int32",
        DType.U32 => "uint32",
        DType.I64 => "int64",
        DType.U64 => "uint64",
        DType.F16 => "float16",
        DType.BF16 => "bfloat16",
        DType.F32 => "float32",
        DType.F64 => "float64",
        DType.C64 => "complex64",
        DType.F8_E4M3 => "float8_e4m3fn",
        DType.F8_E5M2 => "float8_e5m2",
        DType.F8_E8M0 => "float8_e8m0fnu",
        DType.F4 => "float4_e2m1fn_x2",
        DType.F6_E2M3 => "float6_e2m3fn",
        DType.F6_E3M2 => "float6_e3m2fn",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    private static readonly Dictionary<string, DType> SafetensorsNames =
        Enum.GetValues<DType>().ToDictionary(d => d.ToString(), StringComparer.Ordinal);

    private static readonly Dictionary<string, DType> UserNames = BuildUserNames();

    private static Dictionary<string, DType> BuildUserNames()
    {
        var names = new Dictionary<string, DType>(StringComparer.OrdinalIgnoreCase);
        foreach (var d in Enum.GetValues<DType>())
        {
            names[d.ToString()] = d;
            names[d.TorchName()] = d;
        }
        names["float"] = DType.F32;
        names["half"] = DType.F16;
        names["double"] = DType.F64;
        names["fp32"] = DType.F32;
        names["fp16"] = DType.F16;
        names["bf16"] = DType.BF16;
        names["int"] = DType.I32;
        names["long"] = DType.I64;
        names["float8_e4m3"] = DType.F8_E4M3;
        return names;
    }

    /// <summary>Parses the exact safetensors spelling, as a file must use it.</summary>
    public static bool TryParseSafetensors(string name, out DType dtype) => SafetensorsNames.TryGetValue(name, out dtype);

    /// <summary>Parses what a user or a config may write: "F16", "float16", "torch.float16", "half", "bf16".</summary>
    public static bool TryParse(string? name, out DType dtype)
    {
        dtype = default;
        if (string.IsNullOrWhiteSpace(name)) return false;
        var trimmed = name.Trim();
        if (trimmed.StartsWith("torch.", StringComparison.OrdinalIgnoreCase)) trimmed = trimmed[6..];
        return UserNames.TryGetValue(trimmed, out dtype);
    }

    /// <summary>Like <see cref="TryParse"/>, throwing <see cref="BigModelErrorCode.InvalidDType"/> on failure.</summary>
    public static DType Parse(string? name)
    {
        if (TryParse(name, out var dtype)) return dtype;
        throw new BigModelException(BigModelErrorCode.InvalidDType,
            $"'{name}' is not a known dtype; use one of float32, float16, bfloat16, float64, int8, uint8, int16, int32, int64, bool (or the safetensors names F32, F16, BF16, ...).");
    }

    /// <summary>Bytes for <paramref name="elements"/> elements, overflow-checked; null when the bit count is not whole bytes.</summary>
    public static long? ByteCount(this DType dtype, long elements)
    {
        long bits;
        try { bits = checked(elements * dtype.Bits()); }
        catch (OverflowException) { return null; }
        return bits % 8 == 0 ? bits / 8 : null;
    }
}
