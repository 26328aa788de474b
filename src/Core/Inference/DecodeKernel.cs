using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// The linear layers of one-token decoding (and prompts of up to <see cref="MaxInputRows"/> tokens) on the CPU, at
/// memory bandwidth. Decoding reads every weight once per token, so its speed is bytes ÷ bandwidth; libtorch's
/// matrix-vector product reaches about a third of the bandwidth here, this kernel nearly all of it: SIMD dot products
/// over blocks of weight rows (<see cref="MatVec"/>), split over persistent per-core workers
/// (<see cref="CoreWorkers"/>) that claim blocks dynamically, so a core the OS takes away for a moment delays
/// nothing. Weights are read in place, wherever they live (a resident copy, a staging buffer or a view into the
/// mapped checkpoint), in float32, float16 or bfloat16; 16-bit weights are widened in registers and summed in
/// float32. Every other call (more rows, another device, other types, autograd) goes to libtorch.
/// </summary>
internal sealed unsafe class DecodeKernel : ILinearKernel, IDisposable
{
    /// <summary>Most input rows (tokens × batch) the kernel takes; more is a matrix product libtorch does well.</summary>
    public const int MaxInputRows = 8;

    /// <summary>Upper bound of rows per claimed block, which sizes the workers' scratch.</summary>
    private const int MaxBlockRows = 256;

    /// <summary>Aim for blocks of about this many weight bytes: big enough to stream, small enough to balance.</summary>
    private const long BlockBytes = 256 << 10;

    private readonly object _gate = new();
    /// <summary>
    /// float16 weights read once with no infinity or NaN in them: later calls skip the watch for those
    /// (<see cref="F16FiniteWeights"/>). Keyed by tensor object, not address: a weight's tensor keeps its contents for
    /// its lifetime (resident copies and mapped views live as long as the session), while staging space that is
    /// reused for other weights gets new view tensors each time, which are checked afresh.
    /// </summary>
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<Tensor, object> _finite = new();
    private readonly ILinearKernel _fallback;
    private readonly CoreWorkers _workers;
    private readonly LinearWork _work;
    private readonly CacheWarming _warming = new();
    private readonly int _width;
    private float* _inputs;
    private long _inputCapacity;
    private bool _disposed;

    /// <param name="threads">Cores to compute on (the calling thread is one of them).</param>
    /// <param name="width">Vector width, 256 or 512; null takes the hardware's.</param>
    /// <param name="fallback">Where calls the kernel does not take go; libtorch by default.</param>
    public DecodeKernel(int threads, int? width = null, ILinearKernel? fallback = null)
    {
        _width = width ?? MatVec.HardwareWidth;
        if (_width is not (256 or 512)) throw new PlatformNotSupportedException("the decode kernel needs AVX2 and FMA, or AVX-512.");
        _fallback = fallback ?? TorchLinearKernel.Instance;
        _workers = new CoreWorkers(threads);
        _work = new LinearWork(threads);
    }

    /// <summary>True when this processor runs the kernel natively (AVX2 with FMA, or AVX-512).</summary>
    public static bool IsSupported => MatVec.HardwareWidth != 0;

    /// <summary>Cores a call computes on.</summary>
    public int Threads => _workers.Count;

    /// <summary>Calls the kernel computed itself (the rest went to libtorch).</summary>
    public long KernelCalls { get; private set; }

    /// <summary>Wall time spent in the calls the kernel computed itself.</summary>
    public TimeSpan KernelTime => Stopwatch.GetElapsedTime(0, _kernelTicks);

    private long _kernelTicks;

    public Tensor Linear(Tensor input, Tensor weight, Tensor? bias)
    {
        if (!Accepts(input, weight, bias, out var format, out long rows, out long columns, out long inputRows))
            return _fallback.Linear(input, weight, bias);
        long started = Stopwatch.GetTimestamp();
        var shape = input.shape;
        shape[^1] = rows;
        var output = empty(shape, input.dtype);
        using var contiguous = input.is_contiguous() ? null : input.contiguous();
        var source = contiguous ?? input;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            int m = (int)inputRows, n = (int)rows;
            float* x = PrepareInputs(format, (byte*)TorchTypes.DataPointer(source), m, columns);
            _work.Begin(format, _width, columns, x, m, floatOutput: false);
            bool finite = AddTo(format, weight, bias, n, columns, (byte*)TorchTypes.DataPointer(output));
            _workers.Run(_work);
            Trust(format, weight, finite, 0);
            KernelCalls++;
            _kernelTicks += Stopwatch.GetTimestamp() - started;
        }
        return output;
    }

    /// <summary>
    /// <c>y = W·x (+ b)</c> for one input row held as float32 in memory, for each of up to three projections of that
    /// input (q, k and v; gate and up), computed as one job; each output is written as float32, without rounding to
    /// the weight's type: the entry of <see cref="OneTokenLayer"/>, which keeps a token's activations in its own
    /// buffers instead of tensors. Every weight must be a 2-D contiguous CPU tensor of <paramref name="columns"/>
    /// columns, all of one type (F32, F16 or BF16), the biases of that type and their rows; <see cref="AcceptsWeight"/>
    /// says so. For 16-bit weights the inputs should already be values of that type, as a tensor would hold them.
    /// </summary>
    internal void Linear(ReadOnlySpan<Projection> projections, float* x, long columns)
    {
        if (projections.Length is 0 or > LinearWork.MaxSegments) throw new ArgumentOutOfRangeException(nameof(projections));
        long started = Stopwatch.GetTimestamp();
        var type = projections[0].Weight.dtype;
        var format = FormatOf(type) ?? throw new ArgumentException($"the kernel does not take {type} weights.", nameof(projections));
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            float* inputs = format == WeightFormat.F32 ? x : PrepareInputs(format, x, columns);
            _work.Begin(format, _width, columns, inputs, 1, floatOutput: true);
            Span<bool> finite = stackalloc bool[projections.Length];
            for (int i = 0; i < projections.Length; i++)
            {
                var p = projections[i];
                if (p.Weight.dtype != type) throw new ArgumentException("the projections of one call must share their type.", nameof(projections));
                finite[i] = AddTo(format, p.Weight, p.Bias, (int)p.Weight.size(0), columns, (byte*)p.Output);
            }
            _workers.Run(_work);
            for (int i = 0; i < projections.Length; i++) Trust(format, projections[i].Weight, finite[i], i);
            KernelCalls++;
            _kernelTicks += Stopwatch.GetTimestamp() - started;
        }
    }

    /// <summary>
    /// Starts reading the leading bytes of <paramref name="weights"/>, the next call's in the order it reads them,
    /// on the cores other than the caller's, and returns at once (<see cref="CacheWarming"/>); the next call stops it.
    /// Weights that are not contiguous CPU tensors are skipped. Does nothing on one core. Returns whether it started.
    /// </summary>
    internal bool Warm(ReadOnlySpan<Tensor> weights)
    {
        if (_workers.Count < 2) return false;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            // The warming object is reused: the one still running must be stopped before its ranges change.
            _workers.Stop();
            _warming.Begin();
            foreach (var w in weights)
                if (w.device_type == DeviceType.CPU && w.is_contiguous())
                    _warming.Add((byte*)TorchTypes.DataPointer(w), w.numel() * w.element_size());
            if (_warming.Bytes == 0) return false;
            _workers.Start(_warming);
            return true;
        }
    }

    /// <summary>
    /// Runs <paramref name="work"/> on the kernel's workers (the caller included) and returns when it is done: other
    /// one-token work big enough to share the cores (a long attention window). Stops a running warming, as a call does.
    /// </summary>
    internal void RunParallel(IParallelWork work)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _workers.Run(work);
        }
    }

    /// <summary>A weight (and bias) to multiply the call's input by, and where its float32 outputs go.</summary>
    internal readonly struct Projection(Tensor weight, Tensor? bias, float* output)
    {
        public Tensor Weight { get; } = weight;
        public Tensor? Bias { get; } = bias;
        public nint Output { get; } = (nint)output;
    }

    /// <summary>Adds <paramref name="weight"/> to the call being set up; returns whether it is trusted finite.</summary>
    private bool AddTo(WeightFormat format, Tensor weight, Tensor? bias, int rows, long columns, byte* output)
    {
        bool finite = format == WeightFormat.F16 && _finite.TryGetValue(weight, out _);
        _work.Add((byte*)TorchTypes.DataPointer(weight), rows, bias is null ? null : (byte*)TorchTypes.DataPointer(bias), output,
            BlockRowsFor(rows, columns * ElementBytes(format), _workers.Count), finite);
        return finite;
    }

    /// <summary>A float16 weight read whole without an infinity or NaN is trusted from now on.</summary>
    private void Trust(WeightFormat format, Tensor weight, bool finite, int segment)
    {
        if (format == WeightFormat.F16 && !finite && !_work.SawSpecial(segment)) _finite.TryAdd(weight, Finite);
    }

    /// <summary>Whether the kernel takes this weight (and bias) for inputs of <paramref name="columns"/> values of <paramref name="type"/>: a 2-D contiguous CPU tensor of that type, the bias matching its rows.</summary>
    internal static bool AcceptsWeight(Tensor weight, Tensor? bias, long columns, ScalarType type) =>
        weight.device_type == DeviceType.CPU && weight.dtype == type && FormatOf(type) is not null && weight.dim() == 2 && weight.size(1) == columns
        && weight.size(0) is > 0 and <= int.MaxValue && weight.is_contiguous()
        && (bias is null || (bias.device_type == DeviceType.CPU && bias.dtype == type && bias.dim() == 1 && bias.size(0) == weight.size(0) && bias.is_contiguous()));

    private static WeightFormat? FormatOf(ScalarType type) => type switch
    {
        ScalarType.Float32 => WeightFormat.F32,
        ScalarType.Float16 => WeightFormat.F16,
        ScalarType.BFloat16 => WeightFormat.BF16,
        _ => null,
    };

    /// <summary>The calls the kernel takes: CPU, 2-D contiguous weights of a float type the input shares, few input rows, no autograd.</summary>
    private static bool Accepts(Tensor input, Tensor weight, Tensor? bias, out WeightFormat format, out long rows, out long columns, out long inputRows)
    {
        format = default;
        rows = columns = inputRows = 0;
        if (input.device_type != DeviceType.CPU || input.dim() < 1) return false;
        var type = input.dtype;
        columns = input.size(-1);
        if (columns <= 0 || FormatOf(type) is not WeightFormat known || !AcceptsWeight(weight, bias, columns, type)) return false;
        format = known;
        rows = weight.size(0);
        inputRows = input.numel() / columns;
        if (inputRows is < 1 or > MaxInputRows) return false;
        if ((weight.requires_grad || input.requires_grad) && is_grad_enabled()) return false;
        return true;
    }

    private static readonly object Finite = new();

    private static int ElementBytes(WeightFormat format) => format == WeightFormat.F32 ? 4 : 2;

    /// <summary>Rows per claimed block: about <see cref="BlockBytes"/>, a multiple of 4, and at least a few blocks per worker.</summary>
    internal static int BlockRowsFor(int rows, long rowBytes, int workers)
    {
        long byBytes = Math.Max(4, BlockBytes / Math.Max(1, rowBytes));
        long byBalance = Math.Max(4, rows / (4L * workers));
        long block = Math.Min(Math.Min(byBytes, byBalance), MaxBlockRows);
        return (int)Math.Max(4, block / 4 * 4);
    }

    /// <summary>
    /// The inputs as the loops read them: float32 scaled for the format (<see cref="IWeightFormat"/>) and, for 16-bit weights at 256 bits, interleaved (<see cref="InputConversion.Interleave"/>). Float32 inputs
    /// are read in place.
    /// </summary>
    private float* PrepareInputs(WeightFormat format, byte* source, int m, long columns)
    {
        if (format == WeightFormat.F32) return (float*)source;
        long needed = m * columns;
        EnsureInputCapacity(needed);
        if (format == WeightFormat.BF16) InputConversion.BF16ToSingle((ushort*)source, _inputs, needed);
        else InputConversion.HalfToScaledSingle((ushort*)source, _inputs, needed, MatVec.InputScale(format));
        if (MatVec.InterleavesInputs(format, _width)) InputConversion.Interleave(format, _inputs, m, columns);
        return _inputs;
    }

    /// <summary>float32 inputs as the loops for 16-bit <paramref name="format"/> read them (scaled, interleaved).</summary>
    private float* PrepareInputs(WeightFormat format, float* source, long columns)
    {
        EnsureInputCapacity(columns);
        float scale = MatVec.InputScale(format);
        long i = 0;
        var factor = Vector256.Create(scale);
        for (; i + 8 <= columns; i += 8) (Vector256.Load(source + i) * factor).Store(_inputs + i);
        for (; i < columns; i++) _inputs[i] = source[i] * scale;
        if (MatVec.InterleavesInputs(format, _width)) InputConversion.Interleave(format, _inputs, 1, columns);
        return _inputs;
    }

    private void EnsureInputCapacity(long needed)
    {
        if (needed <= _inputCapacity) return;
        NativeMemory.AlignedFree(_inputs);
        _inputs = (float*)NativeMemory.AlignedAlloc((nuint)(needed * sizeof(float)), 64);
        _inputCapacity = needed;
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _workers.Dispose();
            _work.Dispose();
            NativeMemory.AlignedFree(_inputs);
            _inputs = null;
        }
    }

    /// <summary>
    /// One call's parameters, and what each participant does with them: one input against up to
    /// <see cref="MaxSegments"/> weight matrices of the same type and width (q, k and v, or gate and up, share their
    /// input). Workers claim row blocks across all of them, so the matrices stream as one job with one barrier.
    /// </summary>
    private sealed class LinearWork : IParallelWork, IDisposable
    {
        public const int MaxSegments = 3;

        private readonly float*[] _scratch;
        private readonly Segment[] _segments = new Segment[MaxSegments];
        private readonly int[] _special = new int[MaxSegments];
        private int _count;
        private int _blocks;
        private WeightFormat _format;
        private int _width;
        private long _columns;
        private float* _inputs;
        private int _inputRows;
        private bool _floatOutput;
        private int _next;

        /// <summary>A weight matrix of the call, where its outputs go, and its first block among the call's blocks.</summary>
        private struct Segment
        {
            public byte* Weight;
            public int Rows;
            public byte* Bias;
            public byte* Output;
            public int BlockRows;
            public bool Finite;
            public int FirstBlock;
        }

        public LinearWork(int workers)
        {
            _scratch = new float*[workers];
            for (int i = 0; i < workers; i++) _scratch[i] = (float*)NativeMemory.AlignedAlloc((nuint)(MaxInputRows * MaxBlockRows * sizeof(float)), 64);
        }

        /// <summary>Starts a call: <paramref name="inputRows"/> inputs of <paramref name="columns"/> (prepared for the format); outputs in float32 when <paramref name="floatOutput"/>, else in the weights' type.</summary>
        public void Begin(WeightFormat format, int width, long columns, float* inputs, int inputRows, bool floatOutput)
        {
            _format = format;
            _width = width;
            _columns = columns;
            _inputs = inputs;
            _inputRows = inputRows;
            _floatOutput = floatOutput || format == WeightFormat.F32;
            _count = 0;
            _blocks = 0;
            _next = 0;
        }

        /// <summary>Adds a weight matrix of <paramref name="rows"/> rows to the call.</summary>
        public void Add(byte* weight, int rows, byte* bias, byte* output, int blockRows, bool finite)
        {
            _segments[_count] = new Segment
            {
                Weight = weight, Rows = rows, Bias = bias, Output = output, BlockRows = blockRows, Finite = finite, FirstBlock = _blocks,
            };
            _special[_count] = 0;
            _blocks += (rows + blockRows - 1) / blockRows;
            _count++;
        }

        /// <summary>Whether a row of matrix <paramref name="segment"/> held an infinity or NaN in the last call.</summary>
        public bool SawSpecial(int segment) => Volatile.Read(ref _special[segment]) != 0;

        public void Execute(int worker)
        {
            float* scratch = _scratch[worker];
            while (true)
            {
                int block = Interlocked.Increment(ref _next) - 1;
                if (block >= _blocks) return;
                int s = _count - 1;
                while (block < _segments[s].FirstBlock) s--;
                ref readonly var segment = ref _segments[s];
                int from = (block - segment.FirstBlock) * segment.BlockRows;
                int to = Math.Min(segment.Rows, from + segment.BlockRows);
                bool special;
                if (_floatOutput && segment.Bias is null)
                {
                    special = MatVec.Rows(_format, segment.Finite, _width, segment.Weight, _columns, from, to, _inputs, _columns, _inputRows,
                        (float*)segment.Output + from, segment.Rows);
                }
                else
                {
                    special = MatVec.Rows(_format, segment.Finite, _width, segment.Weight, _columns, from, to, _inputs, _columns, _inputRows,
                        scratch, segment.BlockRows);
                    Store(segment, scratch, from, to);
                }
                if (special) Volatile.Write(ref _special[s], 1);
            }
        }

        /// <summary>
        /// Adds the bias and writes the block in the output's type (round to nearest even, as torch does). float16
        /// outputs are rounded and stored vectorised: the runtime's scalar conversion took about 10 ns a value, a
        /// third of a millisecond per token for a 32000-word head.
        /// </summary>
        private void Store(in Segment segment, float* scratch, int from, int to)
        {
            int count = to - from;
            for (int j = 0; j < _inputRows; j++)
            {
                float* src = scratch + (long)j * segment.BlockRows;
                long at = (long)j * segment.Rows + from;
                if (segment.Bias is not null)
                    for (int i = 0; i < count; i++) src[i] += BiasAt(segment.Bias, from + i);
                if (_floatOutput)
                {
                    new ReadOnlySpan<float>(src, count).CopyTo(new Span<float>((float*)segment.Output + at, count));
                }
                else if (_format == WeightFormat.F16)
                {
                    InputConversion.RoundToHalf(src, count);
                    InputConversion.HalfValuesToHalf(src, (ushort*)segment.Output + at, count);
                }
                else
                {
                    for (int i = 0; i < count; i++) ((ushort*)segment.Output)[at + i] = InputConversion.SingleToBF16(src[i]);
                }
            }
        }

        private float BiasAt(byte* bias, int n) => _format switch
        {
            WeightFormat.F32 => ((float*)bias)[n],
            WeightFormat.F16 => (float)((Half*)bias)[n],
            _ => BitConverter.Int32BitsToSingle(((ushort*)bias)[n] << 16),
        };

        public void Dispose()
        {
            for (int i = 0; i < _scratch.Length; i++)
            {
                NativeMemory.AlignedFree(_scratch[i]);
                _scratch[i] = null;
            }
        }
    }
}
