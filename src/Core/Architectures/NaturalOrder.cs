namespace BigModel.Architectures;

/// <summary>
/// Numeric-aware ordinal ordering of dotted names: "layers.2" before "layers.10". Digit runs compare by value
/// (then by length, so "01" and "1" stay distinct), everything else ordinally.
/// </summary>
public sealed class NaturalOrder : IComparer<string>
{
    public static readonly NaturalOrder Instance = new();

    public int Compare(string? x, string? y)
    {
        if (ReferenceEquals(x, y)) return 0;
        if (x is null) return -1;
        if (y is null) return 1;
        int i = 0, j = 0;
        while (i < x.Length && j < y.Length)
        {
            if (char.IsAsciiDigit(x[i]) && char.IsAsciiDigit(y[j]))
            {
                int si = i, sj = j;
                while (si < x.Length && x[si] == '0') si++;
                while (sj < y.Length && y[sj] == '0') sj++;
                int ei = si, ej = sj;
                while (ei < x.Length && char.IsAsciiDigit(x[ei])) ei++;
                while (ej < y.Length && char.IsAsciiDigit(y[ej])) ej++;
                int lengthDiff = (ei - si) - (ej - sj);
                if (lengthDiff != 0) return lengthDiff;
                int c = string.CompareOrdinal(x, si, y, sj, ei - si);
                if (c != 0) return c;
                int zeros = (si - i) - (sj - j);
                if (zeros != 0) return zeros;
                i = ei;
                j = ej;
            }
            else
            {
                if (x[i] != y[j]) return x[i].CompareTo(y[j]);
                i++;
                j++;
            }
        }
        return (x.Length - i).CompareTo(y.Length - j);
    }
}
