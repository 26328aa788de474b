using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace BigModel.Inference;

/// <summary>
/// Reads the leading bytes of the weights the next kernel call will stream, on the cores the caller is not using,
/// while the caller computes what comes before that call (attention, norms, activations). Between its matrix-vector
/// products a decode step has tens of microseconds of such arithmetic per projection, milliseconds per token, during
/// which the memory bus would otherwise stand idle and the other cores spin. Lines read here go to that core's
/// cache and, evicted, to the shared last-level cache, from where the next call reads them faster than from memory.
/// It reads in the order the call claims its blocks, stops at <see cref="MaxBytes"/> (well inside a last-level cache,
/// so the first lines are not evicted by the last) and is stopped by the next dispatch.
/// </summary>
internal sealed unsafe class CacheWarming : IBackgroundWork
{
    /// <summary>Most bytes one warming reads ahead.</summary>
    public const long MaxBytes = 8L << 20;

    /// <summary>Bytes claimed at a time: small enough that a stop is noticed within about a microsecond.</summary>
    private const long Piece = 16 << 10;

    private const int MaxRanges = 4;
    private readonly nint[] _starts = new nint[MaxRanges];
    private readonly long[] _lengths = new long[MaxRanges];
    private int _count;
    private long _total;
    private long _next;
    private volatile bool _stopped;
    private Vector256<byte> _sink;

    /// <summary>Clears the ranges for a new warming (not while one runs: stop it first).</summary>
    public void Begin()
    {
        _count = 0;
        _total = 0;
        _next = 0;
        _stopped = false;
    }

    /// <summary>Appends a range to read (ranges past <see cref="MaxRanges"/> or <see cref="MaxBytes"/> are left out).</summary>
    public void Add(byte* start, long bytes)
    {
        if (_count == MaxRanges || bytes <= 0) return;
        bytes = Math.Min(bytes, MaxBytes - _total);
        if (bytes <= 0) return;
        _starts[_count] = (nint)start;
        _lengths[_count] = bytes;
        _count++;
        _total += bytes;
    }

    /// <summary>Bytes this warming reads if nothing stops it.</summary>
    public long Bytes => _total;

    public void Stop() => _stopped = true;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Execute(int worker)
    {
        var sink = Vector256<byte>.Zero;
        while (!_stopped)
        {
            long from = Interlocked.Add(ref _next, Piece) - Piece;
            if (from >= _total) break;
            long to = Math.Min(_total, from + Piece);
            // The ranges in order make one sequence of bytes; a piece may straddle two of them.
            long rangeStart = 0;
            for (int r = 0; r < _count && rangeStart < to; r++)
            {
                long rangeEnd = rangeStart + _lengths[r], a = Math.Max(from, rangeStart), z = Math.Min(to, rangeEnd);
                byte* p = (byte*)_starts[r];
                // One load per cache line brings the line in.
                for (long b = a; b < z; b += 64) sink |= Vector256.Create(p[b - rangeStart]);
                rangeStart = rangeEnd;
            }
        }
        // Kept, so the loads cannot be optimised away.
        _sink = sink;
    }
}
