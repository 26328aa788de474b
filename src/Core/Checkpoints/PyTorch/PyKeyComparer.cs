using System.Numerics;

namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// Dict-key equality for unpickled values. Hashes go through <see cref="HashCode"/> and the ordinal string hash,
/// both seeded per process, so a file cannot choose colliding keys to make dict building quadratic. Bytes keys
/// (never used by state dicts) compare by identity, so no key comparison costs more than one string's length.
/// </summary>
internal sealed class PyKeyComparer : IEqualityComparer<object>
{
    public static readonly PyKeyComparer Instance = new();

    public new bool Equals(object? x, object? y)
    {
        if (ReferenceEquals(x, y)) return true;
        return (Normalize(x), Normalize(y)) switch
        {
            (string a, string b) => string.Equals(a, b, StringComparison.Ordinal),
            (long a, long b) => a == b,
            (BigInteger a, BigInteger b) => a == b,
            (double a, double b) => a.Equals(b),
            _ => false,
        };
    }

    public int GetHashCode(object obj)
    {
        switch (Normalize(obj))
        {
            case string s: return s.GetHashCode(StringComparison.Ordinal);
            case long l: return HashCode.Combine(l);
            case BigInteger b: return HashCode.Combine(b);
            case double d: return HashCode.Combine(d);
            default: return System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(obj);
        }
    }

    /// <summary>Python's True == 1 and False == 0 as dict keys.</summary>
    private static object? Normalize(object? o) => o is bool b ? (b ? 1L : 0L) : o;
}
