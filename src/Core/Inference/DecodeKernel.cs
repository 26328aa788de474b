using System.Runtime.Intrinsics;
using System.Diagnostics;
using System.Runtime.InteropServices;
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
            bool finite = format == WeightFormat.F16 && _finite.TryGetValue(weight, out _);
            _work.Set(format, finite, _width, (byte*)TorchTypes.DataPointer(weight), columns, n, x, m,
                bias is null ? null : (byte*)TorchTypes.DataPointer(bias), (byte*)TorchTypes.DataPointer(output),
                BlockRowsFor(n, columns * ElementBytes(format), _workers.Count));
            _workers.Run(_work);
            if (format == WeightFormat.F16 && !finite && !_work.SawSpecial) _finite.TryAdd(weight, Finite);
            KernelCalls++;
            _kernelTicks += Stopwatch.GetTimestamp() - started;
        }
        return output;
    }

    /// <summary>
    /// <c>y = W·x (+ b)</c> for one input row held as float32 in memory, written as float32 to <paramref name="y"/>
    /// without rounding to the weight's type: the entry of <see cref="OneTokenLayer"/>, which keeps a token's
    /// activations in its own buffers instead of tensors. The weight must be a 2-D contiguous F32, F16 or BF16 CPU
    /// tensor of <paramref name="columns"/> columns (the bias, if any, of its type and rows); <see cref="AcceptsWeight"/>
    /// says so. For 16-bit weights the inputs should already be values of that type, as a tensor would hold them.
    /// </summary>
    internal void Linear(Tensor weight, Tensor? bias, float* x, long columns, float* y)
    {
        long started = Stopwatch.GetTimestamp();
        var format = FormatOf(weight.dtype) ?? throw new ArgumentException($"the kernel does not take {weight.dtype} weights.", nameof(weight));
        int rows = (int)weight.size(0);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            float* inputs = format == WeightFormat.F32 ? x : PrepareInputs(format, x, columns);
            bool finite = format == WeightFormat.F16 && _finite.TryGetValue(weight, out _);
            _work.Set(format, finite, _width, (byte*)TorchTypes.DataPointer(weight), columns, rows, inputs, 1,
                bias is null ? null : (byte*)TorchTypes.DataPointer(bias), (byte*)y, BlockRowsFor(rows, columns * ElementBytes(format), _workers.Count),
                floatOutput: true);
            _workers.Run(_work);
            if (format == WeightFormat.F16 && !finite && !_work.SawSpecial) _finite.TryAdd(weight, Finite);
            KernelCalls++;
            _kernelTicks += Stopwatch.GetTimestamp() - started;
        }
    }

    /// <summary>Whether <see cref="Linear(Tensor, Tensor?, float*, long, float*)"/> takes this weight (and bias) for inputs of <paramref name="columns"/>.</summary>
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
        if (weight.device_type != DeviceType.CPU || input.device_type != DeviceType.CPU || weight.dim() != 2) return false;
        var type = weight.dtype;
        if (input.dtype != type || FormatOf(type) is not WeightFormat known) return false;
        format = known;
        rows = weight.size(0);
        columns = weight.size(1);
        if (rows <= 0 || columns <= 0 || rows > int.MaxValue || input.dim() < 1 || input.size(-1) != columns) return false;
        inputRows = input.numel() / columns;
        if (inputRows is < 1 or > MaxInputRows || !weight.is_contiguous()) return false;
        if ((weight.requires_grad || input.requires_grad) && is_grad_enabled()) return false;
        if (bias is not null && (bias.device_type != DeviceType.CPU || bias.dtype != type || bias.dim() != 1 || bias.size(0) != rows || !bias.is_contiguous()))
            return false;
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
        if (MatVec.InterleavesInputs(format, _width)) InputConversion.Interleave(_inputs, m, columns);
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
        if (MatVec.InterleavesInputs(format, _width)) InputConversion.Interleave(_inputs, 1, columns);
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

    /// <summary>One linear call's parameters, and what each participant does with them.</summary>
    private sealed class LinearWork : IParallelWork, IDisposable
    {
        private readonly float*[] _scratch;
        private WeightFormat _format;
        private bool _finite;
        private bool _floatOutput;
        private int _sawSpecial;
        private int _width;
        private byte* _weight;
        private long _columns;
        private int _rows;
        private float* _inputs;
        private int _inputRows;
        private byte* _bias;
        private byte* _output;
        private int _blockRows;
        private int _next;

        public LinearWork(int workers)
        {
            _scratch = new float*[workers];
            for (int i = 0; i < workers; i++) _scratch[i] = (float*)NativeMemory.AlignedAlloc((nuint)(MaxInputRows * MaxBlockRows * sizeof(float)), 64);
        }

        /// <summary>Whether a row of the last call held an infinity or NaN.</summary>
        public bool SawSpecial => Volatile.Read(ref _sawSpecial) != 0;

        // floatOutput: write float32 outputs whatever the weights' type (else outputs take the weights' type).
        public void Set(WeightFormat format, bool finite, int width, byte* weight, long columns, int rows, float* inputs, int inputRows, byte* bias, byte* output, int blockRows, bool floatOutput = false)
        {
            _format = format;
            _finite = finite;
            _floatOutput = floatOutput || format == WeightFormat.F32;
            _sawSpecial = 0;
            _width = width;
            _weight = weight;
            _columns = columns;
            _rows = rows;
            _inputs = inputs;
            _inputRows = inputRows;
            _bias = bias;
            _output = output;
            _blockRows = blockRows;
            _next = 0;
        }

        public void Execute(int worker)
        {
            float* scratch = _scratch[worker];
            bool direct = _floatOutput && _bias is null;
            while (true)
            {
                int from = Interlocked.Add(ref _next, _blockRows) - _blockRows;
                if (from >= _rows) return;
                int to = Math.Min(_rows, from + _blockRows);
                bool special;
                if (direct)
                {
                    special = MatVec.Rows(_format, _finite, _width, _weight, _columns, from, to, _inputs, _columns, _inputRows, (float*)_output + from, _rows);
                }
                else
                {
                    special = MatVec.Rows(_format, _finite, _width, _weight, _columns, from, to, _inputs, _columns, _inputRows, scratch, _blockRows);
                    Store(scratch, from, to);
                }
                if (special) Volatile.Write(ref _sawSpecial, 1);
            }
        }

        /// <summary>Adds the bias and writes the block in the output's type (round to nearest even, as torch does).</summary>
        private void Store(float* scratch, int from, int to)
        {
            int count = to - from;
            for (int j = 0; j < _inputRows; j++)
            {
                float* src = scratch + (long)j * _blockRows;
                long at = (long)j * _rows + from;
                for (int i = 0; i < count; i++)
                {
                    float value = src[i];
                    if (_bias is not null) value += BiasAt(from + i);
                    if (_floatOutput)
                    {
                        ((float*)_output)[at + i] = value;
                        continue;
                    }
                    switch (_format)
                    {
                        case WeightFormat.F16: ((Half*)_output)[at + i] = (Half)value; break;
                        default: ((ushort*)_output)[at + i] = InputConversion.SingleToBF16(value); break;
                    }
                }
            }
        }

        private float BiasAt(int n) => _format switch
        {
            WeightFormat.F32 => ((float*)_bias)[n],
            WeightFormat.F16 => (float)((Half*)_bias)[n],
            _ => BitConverter.Int32BitsToSingle(((ushort*)_bias)[n] << 16),
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
