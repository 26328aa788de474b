using BigModel.Inference;
using BigModel.Tests.Inference.Support;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace BigModel.Tests.Inference;

/// <summary>The native decode kernel against libtorch's <c>F.linear</c> on the same weights.</summary>
[Collection(TorchCollection.Name)]
public sealed class DecodeKernelTests
{
    // Odd sizes, columns that are not a multiple of 8 or 16, fewer rows than a 4-row group, and a block split.
    private static readonly (int Rows, int Columns)[] Shapes =
    [
        (1, 1), (3, 7), (4, 16), (5, 17), (7, 33), (13, 100), (64, 1023), (129, 1031), (300, 256), (517, 64),
    ];

    public static TheoryData<ScalarType, int, int> Cases()
    {
        var data = new TheoryData<ScalarType, int, int>();
        foreach (var type in new[] { ScalarType.Float32, ScalarType.Float16, ScalarType.BFloat16 })
            foreach (int threads in new[] { 1, 2 })
                foreach (int width in new[] { 256, 512 })
                    data.Add(type, threads, width);
        return data;
    }

    [InferenceTheory(Needs.DecodeKernel)]
    [MemberData(nameof(Cases))]
    public void Matches_libtorch_on_random_shapes_for_one_to_eight_input_rows(ScalarType type, int threads, int width)
    {
        using var kernel = new DecodeKernel(threads, width);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator((ulong)(1234 + (int)type * 10 + threads));
        long calls = 0;
        foreach (var (rows, columns) in Shapes)
            for (int m = 1; m <= DecodeKernel.MaxInputRows; m++)
                foreach (bool withBias in new[] { false, true })
                {
                    var w = randn([rows, columns], generator: generator).to(type);
                    var x = randn([1, m, columns], generator: generator).to(type);
                    var b = withBias ? randn([rows], generator: generator).to(type) : null;
                    var actual = kernel.Linear(x, w, b);
                    Assert.Equal(++calls, kernel.KernelCalls);
                    Assert.Equal(type, actual.dtype);
                    Assert.Equal(new long[] { 1, m, rows }, actual.shape);
                    // The same 16-bit values, upcast: what the kernel computes before rounding its output.
                    var reference = F.linear(x.to(ScalarType.Float64), w.to(ScalarType.Float64), b?.to(ScalarType.Float64));
                    string where = $"{type}, {threads} thread(s), {width}-bit, {rows}x{columns}, m={m}, bias={withBias}";
                    AssertClose(reference, actual, type, where);
                    if (type == ScalarType.Float32)
                    {
                        // libtorch's own float32 product differs from the exact one by the same order.
                        var torchResult = F.linear(x, w, b);
                        Assert.True(RelativeError(torchResult.to(ScalarType.Float64), actual) <= 1e-5, where + " vs libtorch float32");
                    }
                }
    }

    /// <summary>Largest |actual − reference| over the largest |reference|.</summary>
    private static double RelativeError(Tensor reference, Tensor actual)
    {
        double scale = Math.Max(reference.abs().max().item<double>(), 1e-30);
        return (actual.to(ScalarType.Float64) - reference).abs().max().item<double>() / scale;
    }

    /// <summary>
    /// float32: within 1e-5 relative. 16-bit outputs: the exact result rounded once to the output type, so each
    /// element within half a unit of its last place (plus the float32 summation's share).
    /// </summary>
    private static void AssertClose(Tensor reference, Tensor actual, ScalarType type, string where)
    {
        if (type == ScalarType.Float32)
        {
            double error = RelativeError(reference, actual);
            Assert.True(error <= 1e-5, $"{where}: relative error {error:E2}");
            return;
        }
        double unit = type == ScalarType.Float16 ? Math.Pow(2, -11) : Math.Pow(2, -8);
        var r = reference.flatten().data<double>().ToArray();
        var a = actual.to(ScalarType.Float64).flatten().data<double>().ToArray();
        double scale = r.Max(Math.Abs);
        for (int i = 0; i < r.Length; i++)
        {
            double allowed = unit * Math.Abs(r[i]) + 1e-5 * scale + (type == ScalarType.Float16 ? 6e-8 : 0);
            Assert.True(Math.Abs(a[i] - r[i]) <= allowed, $"{where}: element {i} is {a[i]}, expected {r[i]}");
        }
    }

    [InferenceFact(Needs.DecodeKernel)]
    public void Float16_subnormal_weights_are_exact_and_infinities_and_nans_propagate()
    {
        using var kernel = new DecodeKernel(2);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        const int Columns = 37;
        var values = new float[6 * Columns];
        for (int i = 0; i < values.Length; i++) values[i] = (i % 5 + 1) * 6e-8f * (i % 2 == 0 ? 1 : -1); // float16 subnormals
        values[1 * Columns + 3] = float.PositiveInfinity;   // in the vector part of a 4-row group
        values[2 * Columns + 36] = float.NegativeInfinity;  // in the scalar tail
        values[3 * Columns + 10] = float.NaN;
        values[5 * Columns + 20] = 65504f;                  // largest finite half: not mistaken for an infinity
        var w = tensor(values, [6, Columns]).to(ScalarType.Float16);
        var x = (ones([1, Columns]) * 0.25).to(ScalarType.Float16);
        var actual = kernel.Linear(x, w, null).to(ScalarType.Float64).flatten().data<double>().ToArray();
        var expected = F.linear(x.to(ScalarType.Float64), w.to(ScalarType.Float64)).flatten().data<double>().ToArray();
        Assert.Equal(double.PositiveInfinity, actual[1]);
        Assert.Equal(double.NegativeInfinity, actual[2]);
        Assert.True(double.IsNaN(actual[3]));
        foreach (int row in new[] { 0, 4, 5 })
            Assert.True(Math.Abs(actual[row] - expected[row]) <= Math.Pow(2, -11) * Math.Abs(expected[row]) + 6e-8, $"row {row}: {actual[row]} vs {expected[row]}");
    }

    [InferenceTheory(Needs.DecodeKernel)]
    [InlineData(256)]
    [InlineData(512)]
    public void Float16_weights_read_once_without_infinities_give_the_same_sums_without_the_watch(int width)
    {
        using var kernel = new DecodeKernel(2, width);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator(77);
        foreach (var (rows, columns) in Shapes)
            for (int m = 1; m <= DecodeKernel.MaxInputRows; m += 3)
            {
                var w = randn([rows, columns], generator: generator).to(ScalarType.Float16);
                var x = randn([1, m, columns], generator: generator).to(ScalarType.Float16);
                var first = kernel.Linear(x, w, null);
                var second = kernel.Linear(x, w, null);   // the weight is now known finite: the loops without the watch
                string where = $"{width}-bit, {rows}x{columns}, m={m}";
                Assert.True(first.data<Half>().ToArray().SequenceEqual(second.data<Half>().ToArray()), where + ": second call differs");
                AssertClose(F.linear(x.to(ScalarType.Float64), w.to(ScalarType.Float64)), second, ScalarType.Float16, where);
            }

        // A weight with an infinity is never trusted: every call still finds it.
        var values = new float[5 * 40];
        for (int i = 0; i < values.Length; i++) values[i] = 0.01f * (i % 7 - 3);
        values[2 * 40 + 5] = float.PositiveInfinity;
        var special = tensor(values, [5, 40]).to(ScalarType.Float16);
        var input = ones([1, 40]).to(ScalarType.Float16);
        for (int call = 0; call < 3; call++)
            Assert.Equal(double.PositiveInfinity, kernel.Linear(input, special, null).to(ScalarType.Float64)[0, 2].item<double>());
    }

    [InferenceFact(Needs.DecodeKernel)]
    public unsafe void Warming_the_next_weights_leaves_the_results_alone()
    {
        var kernel = new DecodeKernel(2);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator(5);
        const int Columns = 96;
        var weights = new[] { randn([300, Columns], generator: generator).to(ScalarType.Float16), randn([70, Columns], generator: generator).to(ScalarType.Float16) };
        var transposed = randn([Columns, 40], generator: generator).to(ScalarType.Float16).t();   // not contiguous: skipped
        var x = randn([Columns], generator: generator).to(ScalarType.Float16);
        var input = x.to(ScalarType.Float32).contiguous();
        var outputs = new[] { new float[300], new float[70] };
        for (int call = 0; call < 50; call++)
        {
            kernel.Warm([weights[0], transposed, weights[1]]);
            if (call % 2 == 0) Thread.SpinWait(1000);
            if (call % 3 == 0) kernel.Warm([weights[1]]);   // a second warming replaces the first one while it runs
            fixed (float* o0 = outputs[0], o1 = outputs[1])
                kernel.Linear([new(weights[0], null, o0), new(weights[1], null, o1)], (float*)TorchTypes.DataPointer(input), Columns);
            for (int i = 0; i < 2; i++)
            {
                double error = RelativeError(F.linear(x.to(ScalarType.Float64), weights[i].to(ScalarType.Float64)), tensor(outputs[i]).to(ScalarType.Float64));
                Assert.True(error <= 1e-5, $"call {call}, projection {i}: relative error {error:E2}");
            }
        }
        kernel.Warm([weights[1]]);
        kernel.Dispose();
        Assert.Throws<ObjectDisposedException>(() => kernel.Warm([weights[0]]));
    }

    [InferenceTheory(Needs.DecodeKernel)]
    [InlineData(ScalarType.Float32, 256)]
    [InlineData(ScalarType.Float16, 256)]
    [InlineData(ScalarType.BFloat16, 256)]
    [InlineData(ScalarType.Float16, 512)]
    public unsafe void Several_projections_of_one_input_in_one_call_each_match_libtorch(ScalarType type, int width)
    {
        using var kernel = new DecodeKernel(2, width);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator(99);
        const int Columns = 203;
        // Row counts that split into different block sizes and leave partial blocks; biases on some.
        (int Rows, bool Bias)[] shapes = [(37, true), (300, false), (5, true)];
        var weights = shapes.Select(s => randn([s.Rows, Columns], generator: generator).to(type)).ToArray();
        var biases = shapes.Select(s => s.Bias ? randn([s.Rows], generator: generator).to(type) : null).ToArray();
        var x = randn([Columns], generator: generator).to(type);
        var input = x.to(ScalarType.Float32).contiguous();
        var outputs = shapes.Select(s => new float[s.Rows]).ToArray();
        for (int call = 0; call < 2; call++)   // the second call reads float16 weights as trusted finite
        {
            fixed (float* o0 = outputs[0], o1 = outputs[1], o2 = outputs[2])
                kernel.Linear([new(weights[0], biases[0], o0), new(weights[1], biases[1], o1), new(weights[2], biases[2], o2)],
                    (float*)TorchTypes.DataPointer(input), Columns);
            for (int i = 0; i < shapes.Length; i++)
            {
                var reference = F.linear(x.to(ScalarType.Float64), weights[i].to(ScalarType.Float64), biases[i]?.to(ScalarType.Float64));
                var actual = tensor(outputs[i]).to(ScalarType.Float64);
                double error = RelativeError(reference, actual);
                Assert.True(error <= 1e-5, $"{type}, {width}-bit, call {call}, projection {i}: relative error {error:E2}");
            }
        }
    }

    [InferenceFact(Needs.Stories260K, Needs.DecodeKernel)]
    public void Stories260K_greedy_ids_are_the_same_with_the_kernel_as_with_libtorch()
    {
        var greedy = new GenerationOptions { MaxNewTokens = 40, StopTokenIds = [] };
        IReadOnlyList<int> Run(IReadOnlyDictionary<string, string>? placement, InferenceOptions options, LinearKernel expected, int[] prompt)
        {
            using var session = InferenceSession.Open(Requirements.Stories260K, placement, options);
            Assert.Equal(expected, session.LinearKernel);
            var ids = session.Generate(prompt, greedy).GeneratedIds;
            Assert.Equal(expected == LinearKernel.Native, session.NativeLinearCalls > 0);
            return ids;
        }
        // A one-token prompt decodes everything with the kernel; a longer one leaves its prefill to libtorch.
        foreach (var prompt in new[] { new[] { 1 }, new[] { 1, 403, 407, 261, 420, 12, 9, 30, 300, 60 } })
        {
            var expected = Run(null, new InferenceOptions { Threads = 1, LinearKernel = LinearKernel.LibTorch }, LinearKernel.LibTorch, prompt);
            Assert.Equal(40, expected.Count);
            foreach (var placement in new[] { null, Stories260KTests.CpuAndDisk, Stories260KTests.AllDisk })
                foreach (int threads in new[] { 1, 2 })
                {
                    var ids = Run(placement, new InferenceOptions { Threads = threads, LinearKernel = LinearKernel.Native }, LinearKernel.Native, prompt);
                    Assert.True(expected.SequenceEqual(ids),
                        $"{threads} thread(s), {placement?.Count ?? 0} placement entries: [{string.Join(",", ids)}] differs from libtorch's [{string.Join(",", expected)}]");
                }
        }
    }

    [InferenceFact(Needs.DecodeKernel)]
    public void Leaves_what_it_does_not_take_to_libtorch()
    {
        using var kernel = new DecodeKernel(2);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var w = randn([10, 24]);
        // More input rows than a decode step, a float64 weight, a strided (transposed) weight.
        var cases = new (Tensor X, Tensor W)[]
        {
            (randn([1, DecodeKernel.MaxInputRows + 1, 24]), w),
            (randn([1, 24], ScalarType.Float64), w.to(ScalarType.Float64)),
            (randn([1, 10]), w.t()),
        };
        foreach (var (x, weight) in cases)
        {
            var actual = kernel.Linear(x, weight, null);
            Assert.True(actual.allclose(F.linear(x, weight)));
        }
        Assert.Equal(0, kernel.KernelCalls);
    }

    [Fact]
    public void Block_rows_are_multiples_of_four_and_leave_every_worker_several_blocks()
    {
        foreach (var (rows, rowBytes, workers) in new[] { (1024, 4096L, 2), (32000, 4096L, 2), (2816, 2048L, 2), (5, 28L, 1), (256, 11264L, 8) })
        {
            int block = DecodeKernel.BlockRowsFor(rows, rowBytes, workers);
            Assert.True(block >= 4 && block % 4 == 0, $"{rows} rows: {block}");
            Assert.True(rows <= 16 * workers || (rows + block - 1) / block >= 2 * workers, $"{rows} rows, {workers} workers: blocks of {block}");
        }
    }
}
