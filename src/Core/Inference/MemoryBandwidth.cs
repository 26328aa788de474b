using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace BigModel.Inference;

/// <summary>
/// How fast this process can read memory with the decode kernel's workers: the floor of one-token decoding, which
/// reads every weight once (bytes per token ÷ this speed).
/// </summary>
public static unsafe class MemoryBandwidth
{
    /// <summary>
    /// Sums a buffer of <paramref name="bytes"/> (touched first, so every page is resident) with
    /// <paramref name="threads"/> persistent workers, each reading its own share with SIMD loads, and returns the
    /// best of <paramref name="passes"/> read speeds in bytes per second.
    /// </summary>
    public static double MeasureRead(long bytes = 1L << 30, int threads = 0, int passes = 5)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 1L << 20);
        ArgumentOutOfRangeException.ThrowIfLessThan(passes, 1);
        if (threads <= 0) threads = ProcessorBudget.AvailableCores();
        long floats = bytes / sizeof(float) / 32 * 32;
        var buffer = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        try
        {
            for (long i = 0; i < floats; i += 1024) buffer[i] = i;
            using var workers = new CoreWorkers(threads);
            var work = new SumWork(buffer, floats, threads);
            work.Prepare();
            workers.Run(work);
            double best = 0;
            for (int pass = 0; pass < passes; pass++)
            {
                work.Prepare();
                long start = Stopwatch.GetTimestamp();
                workers.Run(work);
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                best = Math.Max(best, floats * sizeof(float) / seconds);
            }
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    /// <summary>Sums the buffer in 1 MiB pieces claimed by the workers, as the decode kernel claims row blocks.</summary>
    private sealed class SumWork(float* buffer, long floats, int workers) : IParallelWork
    {
        private const long Piece = (1 << 20) / sizeof(float);
        private readonly float[] _sums = new float[workers];
        private long _next;

        public void Prepare() => _next = 0;

        public void Execute(int worker)
        {
            Vector256<float> a = default, b = default, c = default, d = default;
            while (true)
            {
                long from = Interlocked.Add(ref _next, Piece) - Piece;
                if (from >= floats) break;
                long to = Math.Min(floats, from + Piece);
                for (long i = from; i < to; i += 32)
                {
                    a += Vector256.Load(buffer + i);
                    b += Vector256.Load(buffer + i + 8);
                    c += Vector256.Load(buffer + i + 16);
                    d += Vector256.Load(buffer + i + 24);
                }
            }
            // Kept, so the loads cannot be optimised away.
            _sums[worker] = Vector256.Sum((a + b) + (c + d));
        }
    }
}
