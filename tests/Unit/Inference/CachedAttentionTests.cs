using BigModel.Inference;
using static TorchSharp.torch;

namespace BigModel.Tests.Inference;

/// <summary>One token's attention over a cache read in place, against the same formula in double precision on exactly converted values.</summary>
public sealed unsafe class CachedAttentionTests
{
    [Theory]
    [InlineData(ScalarType.Float32, 4, 2, 64, 0, 9)]
    [InlineData(ScalarType.Float16, 4, 2, 64, 0, 9)]
    [InlineData(ScalarType.BFloat16, 4, 2, 64, 0, 9)]
    [InlineData(ScalarType.Float16, 6, 3, 12, 3, 17)]      // a head size with a tail past the last 8, a window that starts late
    [InlineData(ScalarType.BFloat16, 2, 2, 20, 5, 5)]      // a single position
    [InlineData(ScalarType.Float16, 8, 1, 128, 0, 40)]
    public void Attention_matches_the_formula_for_each_cache_type(ScalarType type, int heads, int kvHeads, int headDim, int first, int last)
    {
        var (keys, values, capacity) = RandomCache(type, kvHeads, headDim, last + 3, seed: heads * 100 + headDim);
        var queries = RandomValues(heads * headDim, seed: last);
        var actual = Run(type, heads, kvHeads, headDim, queries, keys, values, capacity, first, last);
        var expected = Reference(type, heads, kvHeads, headDim, queries, keys, values, capacity, first, last);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-5 * (1 + Math.Abs(expected[i])), $"output {i}: {actual[i]:R}, expected {expected[i]:R}");
        // A window the cache vouches for is read the same way, without looking at it first.
        if (type == ScalarType.Float16)
            Assert.Equal(actual, Run(type, heads, kvHeads, headDim, queries, keys, values, capacity, first, last, finite: true));
    }

    [Theory]
    [InlineData(ScalarType.Float16, false)]
    [InlineData(ScalarType.Float16, true)]
    [InlineData(ScalarType.BFloat16, false)]
    [InlineData(ScalarType.Float32, false)]
    public void A_long_window_is_spread_over_the_cores_with_the_same_outputs(ScalarType type, bool withInfinity)
    {
        const int heads = 8, kvHeads = 4, headDim = 64;
        int last = (int)(CachedAttention.ParallelElements / (2 * kvHeads * headDim)) - 1;   // a window of 0..last is just at the threshold
        var (keys, values, capacity) = RandomCache(type, kvHeads, headDim, last + 1, seed: 5);
        if (withInfinity) values[(3L * capacity + 7) * headDim + 1] = BitConverter.HalfToUInt16Bits(Half.NegativeInfinity);
        var queries = RandomValues(heads * headDim, seed: 6);
        var serial = Run(type, heads, kvHeads, headDim, queries, keys, values, capacity, 0, last);

        using var workers = new CoreWorkers(2);
        int dispatches = 0;
        var parallel = new float[heads * headDim];
        using (var attention = new CachedAttention(heads, kvHeads, headDim, workers.Count, work => { dispatches++; workers.Run(work); }))
        fixed (float* q = queries, o = parallel)
        fixed (ushort* k = keys, v = values)
        {
            attention.Run(type, q, (byte*)k, (byte*)v, capacity, 0, last, o);
            Assert.Equal(1, dispatches);
            // One position fewer: below the threshold, on the caller alone.
            attention.Run(type, q, (byte*)k, (byte*)v, capacity, 1, last, o);
            Assert.Equal(1, dispatches);
            attention.Run(type, q, (byte*)k, (byte*)v, capacity, 0, last, o);
        }
        Assert.Equal(serial, parallel);
        if (!withInfinity)
        {
            var expected = Reference(type, heads, kvHeads, headDim, queries, keys, values, capacity, 0, last);
            for (int i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(parallel[i] - expected[i]) <= 1e-5 * (1 + Math.Abs(expected[i])), $"output {i}: {parallel[i]:R}, expected {expected[i]:R}");
        }
    }

    [Fact]
    public void A_float16_cache_holding_infinities_attends_as_the_exact_values_do()
    {
        const int heads = 4, kvHeads = 2, headDim = 16, last = 6;
        var (keys, values, capacity) = RandomCache(ScalarType.Float16, kvHeads, headDim, last + 1, seed: 3);
        // An infinite value in the first key/value head's window (infinite outputs), an infinite key met by a
        // positive query in the second's (an infinite score: NaN everywhere, as softmax gives).
        values[(0 * capacity + 2) * headDim + 5] = BitConverter.HalfToUInt16Bits(Half.PositiveInfinity);
        keys[(1 * capacity + 4) * headDim + 9] = BitConverter.HalfToUInt16Bits(Half.PositiveInfinity);
        var queries = RandomValues(heads * headDim, seed: 11);
        queries[2 * headDim + 9] = queries[3 * headDim + 9] = 1f;
        var actual = Run(ScalarType.Float16, heads, kvHeads, headDim, queries, keys, values, capacity, 0, last);
        var expected = Reference(ScalarType.Float16, heads, kvHeads, headDim, queries, keys, values, capacity, 0, last);
        Assert.Contains(expected, double.IsPositiveInfinity);
        Assert.Contains(expected, double.IsNaN);
        for (int i = 0; i < expected.Length; i++)
        {
            if (double.IsNaN(expected[i]) || double.IsInfinity(expected[i])) Assert.Equal(expected[i], (double)actual[i]);
            else Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-5 * (1 + Math.Abs(expected[i])), $"output {i}: {actual[i]:R}, expected {expected[i]:R}");
        }
    }

    private static float[] Run(ScalarType type, int heads, int kvHeads, int headDim, float[] queries, ushort[] keys, ushort[] values, int capacity, int first, int last,
        bool finite = false)
    {
        var output = new float[heads * headDim];
        using var attention = new CachedAttention(heads, kvHeads, headDim);
        fixed (float* q = queries, o = output)
        fixed (ushort* k = keys, v = values)
            attention.Run(type, q, (byte*)k, (byte*)v, capacity, first, last, o, finite);
        return output;
    }

    /// <summary>The caches as 16-bit words (two per float32 element for float32 caches).</summary>
    private static (ushort[] Keys, ushort[] Values, int Capacity) RandomCache(ScalarType type, int kvHeads, int headDim, int capacity, int seed)
    {
        int words = type == ScalarType.Float32 ? 2 : 1;
        ushort[] Make(int s) => Encode(type, RandomValues(kvHeads * capacity * headDim, s), words);
        return (Make(seed), Make(seed + 1), capacity);
    }

    private static float[] RandomValues(int count, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
    }

    private static ushort[] Encode(ScalarType type, float[] values, int words)
    {
        var encoded = new ushort[values.Length * words];
        for (int i = 0; i < values.Length; i++)
        {
            switch (type)
            {
                case ScalarType.Float16: encoded[i] = BitConverter.HalfToUInt16Bits((Half)values[i]); break;
                case ScalarType.BFloat16: encoded[i] = InputConversion.SingleToBF16(values[i]); break;
                default:
                    uint bits = BitConverter.SingleToUInt32Bits(values[i]);
                    (encoded[2 * i], encoded[2 * i + 1]) = ((ushort)bits, (ushort)(bits >> 16));
                    break;
            }
        }
        return encoded;
    }

    private static double Decode(ScalarType type, ushort[] words, long index) => type switch
    {
        ScalarType.Float16 => (double)BitConverter.UInt16BitsToHalf(words[index]),
        ScalarType.BFloat16 => BitConverter.UInt32BitsToSingle((uint)words[index] << 16),
        _ => BitConverter.UInt32BitsToSingle(words[2 * index] | ((uint)words[2 * index + 1] << 16)),
    };

    private static double[] Reference(ScalarType type, int heads, int kvHeads, int headDim, float[] queries, ushort[] keys, ushort[] values, int capacity, int first, int last)
    {
        var output = new double[heads * headDim];
        int group = heads / kvHeads;
        for (int head = 0; head < heads; head++)
        {
            long at = (long)(head / group) * capacity * headDim;
            var scores = new double[last - first + 1];
            for (int p = first; p <= last; p++)
            {
                double sum = 0;
                for (int i = 0; i < headDim; i++) sum += queries[head * headDim + i] * Decode(type, keys, at + (long)p * headDim + i);
                scores[p - first] = sum / Math.Sqrt(headDim);
            }
            double max = scores.Max(), total = scores.Sum(s => Math.Exp(s - max));
            for (int i = 0; i < headDim; i++)
            {
                double sum = 0;
                for (int p = first; p <= last; p++) sum += Math.Exp(scores[p - first] - max) / total * Decode(type, values, at + (long)p * headDim + i);
                output[head * headDim + i] = sum;
            }
        }
        return output;
    }
}
