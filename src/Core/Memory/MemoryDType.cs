using BigModel.Errors;

namespace BigModel.Memory;

/// <summary>The precisions Get-ModelMemory sizes a model for, as accelerate estimate-memory names them.</summary>
public sealed record MemoryDType(string Name, int Bits)
{
    public static readonly MemoryDType Float32 = new("float32", 32);
    public static readonly MemoryDType Float16 = new("float16", 16);
    public static readonly MemoryDType BFloat16 = new("bfloat16", 16);
    public static readonly MemoryDType Int8 = new("int8", 8);
    public static readonly MemoryDType Int4 = new("int4", 4);

    public static IReadOnlyList<MemoryDType> All { get; } = [Float32, Float16, BFloat16, Int8, Int4];

    /// <summary>accelerate estimate-memory's default rows.</summary>
    public static IReadOnlyList<MemoryDType> Defaults { get; } = [Float32, Float16, Int8, Int4];

    /// <summary>True for quantised weights, whose activations and KV cache run in 16-bit.</summary>
    public bool IsQuantized => Bits < 16;

    /// <summary>Bytes per element of activations and KV cache: the dtype itself, or float16 for quantised weights.</summary>
    public int ComputeBytes => IsQuantized ? 2 : Bits / 8;

    public static MemoryDType Parse(string name)
    {
        var trimmed = name.Trim();
        var match = All.FirstOrDefault(d => string.Equals(d.Name, trimmed, StringComparison.OrdinalIgnoreCase));
        if (match is not null) return match;
        if (Checkpoints.DTypes.TryParse(trimmed, out var dtype))
        {
            match = dtype switch
            {
                Checkpoints.DType.F32 => Float32,
                Checkpoints.DType.F16 => Float16,
                Checkpoints.DType.BF16 => BFloat16,
                Checkpoints.DType.I8 => Int8,
                _ => null,
            };
            if (match is not null) return match;
        }
        throw new BigModelException(BigModelErrorCode.InvalidDType,
            $"'{name}' is not a sizing precision; use {string.Join(", ", All.Select(d => d.Name))}.");
    }

    public override string ToString() => Name;
}
