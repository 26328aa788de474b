using BigModel.Inference;
using static TorchSharp.torch;

namespace BigModel.Tests.Inference;

/// <summary>What the cache remembers of its float16 rows: which leading positions hold no infinity or NaN.</summary>
public sealed unsafe class KvCacheTests
{
    private const int KvHeads = 2, HeadDim = 8, Capacity = 10;
    private static readonly ushort Infinity = BitConverter.HalfToUInt16Bits(Half.PositiveInfinity);

    [Fact]
    public void Rows_found_finite_stay_so_until_written_again()
    {
        using var cache = CacheWithFiniteRows(layers: 2, layer: 1, rows: 4, out byte* keys, out byte* values);

        // An infinity in the second head's key at position 5: windows through 5 and beyond are not finite.
        Write(cache, 1, keys, values, 4);
        Write(cache, 1, keys, values, 5, secondHeadKey: Infinity);
        Assert.True(cache.HalfRowsFinite(1, KvHeads, HeadDim, 4, keys, values));
        Assert.False(cache.HalfRowsFinite(1, KvHeads, HeadDim, 5, keys, values));
        Write(cache, 1, keys, values, 6);
        Assert.False(cache.HalfRowsFinite(1, KvHeads, HeadDim, 6, keys, values));

        // Position 5 written again, finite: the window is finite again.
        Write(cache, 1, keys, values, 5);
        Assert.True(cache.HalfRowsFinite(1, KvHeads, HeadDim, 6, keys, values));

        // A position already found finite, written again with an infinity: looked at again.
        Write(cache, 1, keys, values, 2, secondHeadKey: Infinity);
        Assert.False(cache.HalfRowsFinite(1, KvHeads, HeadDim, 6, keys, values));
    }

    [Fact]
    public void Rows_appended_by_tensors_are_looked_at_again()
    {
        using var cache = CacheWithFiniteRows(layers: 1, layer: 0, rows: 6, out byte* keys, out byte* values);

        // A prompt's rows 2–3 stored through the tensor path, with a NaN among the values.
        using var k = ones([1, KvHeads, 2, HeadDim], ScalarType.Float16);
        using var v = ones([1, KvHeads, 2, HeadDim], ScalarType.Float16);
        v[0, 1, 1, 3] = tensor(float.NaN, ScalarType.Float16);
        var (seenKeys, seenValues) = cache.Append(0, k, v, 2);
        seenKeys.Dispose();
        seenValues.Dispose();
        Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(((ushort*)values)[(1L * Capacity + 3) * HeadDim + 3])));
        Assert.False(cache.HalfRowsFinite(0, KvHeads, HeadDim, 5, keys, values));
    }

    /// <summary>A cache whose <paramref name="layer"/> holds <paramref name="rows"/> finite rows, already found so.</summary>
    private static KvCache CacheWithFiniteRows(int layers, int layer, int rows, out byte* keys, out byte* values)
    {
        var cache = new KvCache(layers, Capacity);
        cache.Slots(layer, KvHeads, HeadDim, 0, ScalarType.Float16, out keys, out values);
        for (int p = 0; p < rows; p++) Write(cache, layer, keys, values, p);
        Assert.True(cache.HalfRowsFinite(layer, KvHeads, HeadDim, rows - 1, keys, values));
        return cache;
    }

    /// <summary>Writes position <paramref name="p"/> of both heads, as a one-token layer does after asking for the slots.</summary>
    private static void Write(KvCache cache, int layer, byte* keys, byte* values, int p, ushort? secondHeadKey = null)
    {
        cache.Slots(layer, KvHeads, HeadDim, p, ScalarType.Float16, out _, out _);
        for (int g = 0; g < KvHeads; g++)
            for (int i = 0; i < HeadDim; i++)
            {
                long at = ((long)g * Capacity + p) * HeadDim + i;
                ((ushort*)keys)[at] = g == 1 && i == 2 && secondHeadKey is ushort special ? special : BitConverter.HalfToUInt16Bits((Half)(0.5f + i));
                ((ushort*)values)[at] = BitConverter.HalfToUInt16Bits((Half)(-0.25f * i));
            }
    }
}
