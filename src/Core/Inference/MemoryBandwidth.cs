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
        using var probe = new Probe(bytes, threads);
        return probe.Measure(passes);
    }

    /// <summary>
    /// A buffer and workers kept for repeated readings, so that a benchmark can take one next to each step it times:
    /// on a shared machine the bandwidth moves by a third within seconds. Its workers poll for a millisecond after a
    /// reading before they park (as the decode kernel's do), so a caller timing other work waits that long first.
    /// </summary>
    public sealed class Probe : IDisposable
    {
        private readonly float* _buffer;
        private readonly long _floats;
        private readonly CoreWorkers _workers;
        private readonly SumWork _work;
        private bool _disposed;

        /// <summary>Allocates and touches <paramref name="bytes"/> and starts <paramref name="threads"/> workers (0: the cores this process may use).</summary>
        public Probe(long bytes, int threads = 0)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 1L << 20);
            if (threads <= 0) threads = ProcessorBudget.AvailableCores();
            _floats = bytes / sizeof(float) / 32 * 32;
            _buffer = (float*)NativeMemory.AlignedAlloc((nuint)(_floats * sizeof(float)), 64);
            _work = new SumWork(_buffer, _floats, threads);
            try
            {
                for (long i = 0; i < _floats; i += 1024) _buffer[i] = i;
                _workers = new CoreWorkers(threads);
                _work.Prepare();
                _workers.Run(_work);
            }
            catch
            {
                _workers?.Dispose();
                NativeMemory.AlignedFree(_buffer);
                throw;
            }
        }

        /// <summary>The best of <paramref name="passes"/> read speeds over the buffer, in bytes per second.</summary>
        public double Measure(int passes = 1)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(passes, 1);
            ObjectDisposedException.ThrowIf(_disposed, this);
            double best = 0;
            for (int pass = 0; pass < passes; pass++)
            {
                _work.Prepare();
                long start = Stopwatch.GetTimestamp();
                _workers.Run(_work);
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                best = Math.Max(best, _floats * sizeof(float) / seconds);
            }
            return best;
        }

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            _workers.Dispose();
            NativeMemory.AlignedFree(_buffer);
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
