using BigModel.Checkpoints;
using BigModel.DeviceMaps;
using BigModel.Errors;
using static BigModel.Tests.DeviceMaps.AccelerateModels;

namespace BigModel.Tests.DeviceMaps;

/// <summary>Accelerate's test_compute_module_sizes and test_compute_module_total_buffer_size on tensor lists.</summary>
public sealed class ComputeModuleSizesTests
{
    private static readonly Dictionary<string, long> Float32Sizes = new()
    {
        [""] = 236, ["linear1"] = 64, ["linear1.weight"] = 48, ["linear1.bias"] = 16,
        ["linear2"] = 100, ["linear2.weight"] = 80, ["linear2.bias"] = 20,
        ["batchnorm"] = 72, ["batchnorm.weight"] = 16, ["batchnorm.bias"] = 16,
        ["batchnorm.running_mean"] = 16, ["batchnorm.running_var"] = 16, ["batchnorm.num_batches_tracked"] = 8,
    };

    private static Dictionary<string, long> HalfSizes()
    {
        var expected = Float32Sizes.ToDictionary(e => e.Key, e => e.Value / 2);
        // num_batches_tracked is int64 and is not converted to half; that adds 4 to batchnorm and to the total.
        expected["batchnorm.num_batches_tracked"] = 8;
        expected["batchnorm"] += 4;
        expected[""] += 4;
        return expected;
    }

    private static void AssertSizes(Dictionary<string, long> expected, IReadOnlyDictionary<string, long> actual)
    {
        Assert.Equal(expected.OrderBy(e => e.Key, StringComparer.Ordinal), actual.OrderBy(e => e.Key, StringComparer.Ordinal));
    }

    [Fact]
    public void Sizes_of_model_for_test_match_accelerate()
    {
        AssertSizes(Float32Sizes, Tree(ModelForTest()).ComputeModuleSizes());
    }

    [Fact]
    public void Half_precision_checkpoint_keeps_int64_buffer_size()
    {
        AssertSizes(HalfSizes(), Tree(ModelForTest(dtype: DType.F16)).ComputeModuleSizes());
    }

    [Fact]
    public void Target_dtype_shrinks_float_tensors_only()
    {
        // compute_module_sizes(model, dtype=torch.float16) gives the same figures as model.half().
        AssertSizes(HalfSizes(), Tree(ModelForTest(), dtype: DType.F16).ComputeModuleSizes());
    }

    [Fact]
    public void Target_dtype_never_grows_a_tensor()
    {
        // min(dtype size, tensor size): asking for float32 leaves a float16 checkpoint at float16 sizes.
        AssertSizes(HalfSizes(), Tree(ModelForTest(dtype: DType.F16), dtype: DType.F32).ComputeModuleSizes());
    }

    [Fact]
    public void Special_dtypes_override_the_target()
    {
        var tree = ModuleTree.Build(ModelForTest(), new ModuleTreeOptions
        {
            DType = DType.F16,
            SpecialDTypes = new Dictionary<string, DType> { ["linear2.weight"] = DType.F32 },
        });
        var sizes = tree.ComputeModuleSizes();
        Assert.Equal(80, sizes["linear2.weight"]);
        Assert.Equal(10, sizes["linear2.bias"]);
        Assert.Equal(90, sizes["linear2"]);
    }

    [Fact]
    public void Total_buffer_size_matches_accelerate()
    {
        // model.linear1.register_buffer("test_buffer", zeros(10, 10)); model.register_buffer("test_buffer2", zeros(20, 10))
        var tensors = ModelForTest();
        tensors.Add(T("linear1.test_buffer", [10, 10]));
        tensors.Add(T("test_buffer2", [20, 10]));
        string[] buffers = ["linear1.test_buffer", "test_buffer2"];
        Assert.Equal(1240, Tree(tensors, buffers: buffers).Root.BufferSize);
        Assert.Equal(1240, Tree(tensors, buffers: buffers).ComputeModuleSizes(buffersOnly: true)[""]);
        // model.half(): float buffers halve, num_batches_tracked stays 8 bytes.
        Assert.Equal(624, Tree(tensors, buffers: buffers, dtype: DType.F16).Root.BufferSize);
    }

    [Fact]
    public void Module_order_follows_the_given_tensor_order()
    {
        var tree = Tree(ModelForTest());
        Assert.Equal(["linear1", "batchnorm", "linear2"], tree.Root.Modules.Select(m => m.Name));
        var bn = tree.Find("batchnorm")!;
        Assert.Equal(["batchnorm.weight", "batchnorm.bias"], bn.Parameters.Select(p => p.Name));
        Assert.Equal(["batchnorm.running_mean", "batchnorm.running_var", "batchnorm.num_batches_tracked"], bn.Buffers.Select(p => p.Name));
    }

    [Fact]
    public void Tied_duplicate_counts_once_under_its_first_name()
    {
        // model.linear1.weight = model.linear2.weight: named_parameters yields the shared tensor once, as linear1.weight.
        List<TensorInfo> tensors =
        [
            T("linear1.weight", [5, 4]), T("linear1.bias", [4]),
            .. BatchNorm("batchnorm", 4),
            T("linear2.weight", [5, 4]), T("linear2.bias", [5]),
        ];
        var sizes = Tree(tensors, tied: [["linear1.weight", "linear2.weight"]]).ComputeModuleSizes();
        Assert.Equal(96, sizes["linear1"]);
        Assert.Equal(20, sizes["linear2"]);
        Assert.False(sizes.ContainsKey("linear2.weight"));
        Assert.Equal(188, sizes[""]);
    }

    [Fact]
    public void Tied_tensor_missing_from_the_checkpoint_gets_a_module_without_size()
    {
        // A tied head is stored once, under the embedding's name; the head module must still exist for placement.
        List<TensorInfo> tensors = [T("model.embed_tokens.weight", [8, 4]), T("model.norm.weight", [4])];
        var tree = Tree(tensors, tied: [["model.embed_tokens.weight", "lm_head.weight"]]);
        var head = tree.Find("lm_head")!;
        Assert.False(head.IsTensor);
        Assert.Equal(0, head.Size);
        Assert.False(head.HasSize);
        Assert.Null(tree.Find("lm_head.weight")!.Tensor);
        Assert.False(tree.ComputeModuleSizes().ContainsKey("lm_head"));
        Assert.Contains(tree.Notes, n => n.Contains("lm_head.weight", StringComparison.Ordinal));
    }

    [Fact]
    public void Tied_groups_sharing_a_tensor_merge()
    {
        var tensors = Enumerable.Range(1, 4).SelectMany(i => Linear($"linear{i}", 2, 2)).ToList();
        var tree = Tree(tensors, tied: [["linear1.weight", "linear2.weight"], ["linear2.weight", "linear4.weight"]]);
        var group = Assert.Single(tree.TiedGroups);
        Assert.Equal(["linear1.weight", "linear2.weight", "linear4.weight"], group.Select(n => n.Name));
    }

    [Theory]
    [InlineData("a..b")]
    [InlineData(".a")]
    [InlineData("a.")]
    public void Malformed_tensor_names_are_rejected(string name)
    {
        var e = Assert.Throws<BigModelException>(() => Tree([T(name, [1])]));
        Assert.Equal(BigModelErrorCode.DeviceMapInvalidModuleName, e.Code);
    }

    [Fact]
    public void A_name_that_is_both_tensor_and_module_is_rejected()
    {
        var e = Assert.Throws<BigModelException>(() => Tree([T("a.b", [1]), T("a.b.c", [1])]));
        Assert.Equal(BigModelErrorCode.DeviceMapModuleConflict, e.Code);
    }

    [Fact]
    public void Tying_a_module_instead_of_a_tensor_is_rejected()
    {
        var e = Assert.Throws<BigModelException>(() => Tree(ModelForTest(), tied: [["linear1", "linear2.weight"]]));
        Assert.Equal(BigModelErrorCode.DeviceMapTiedParameterInvalid, e.Code);
    }

    [Fact]
    public void Tying_only_absent_tensors_is_rejected()
    {
        var e = Assert.Throws<BigModelException>(() => Tree(ModelForTest(), tied: [["x.weight", "y.weight"]]));
        Assert.Equal(BigModelErrorCode.DeviceMapTiedParameterInvalid, e.Code);
    }

    [Fact]
    public void Too_deep_names_are_rejected_without_recursing()
    {
        var deep = string.Join('.', Enumerable.Repeat("m", ModuleTree.MaxDepth + 1));
        var e = Assert.Throws<BigModelException>(() => Tree([T(deep, [1])]));
        Assert.Equal(BigModelErrorCode.DeviceMapInvalidModuleName, e.Code);
    }
}
