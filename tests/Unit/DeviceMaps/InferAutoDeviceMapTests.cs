using BigModel.Checkpoints;
using BigModel.DeviceMaps;
using BigModel.Errors;
using static BigModel.Tests.DeviceMaps.AccelerateModels;

namespace BigModel.Tests.DeviceMaps;

/// <summary>
/// Accelerate's infer_auto_device_map tests (test_infer_auto_device_map, ..._with_tied_weights,
/// ..._with_buffer_check, ..._with_buffer_check_and_multi_devices, ..._with_fallback_allocation*,
/// test_get_module_size_with_ties), same tensors, same budgets, same expected maps.
/// </summary>
public sealed class InferAutoDeviceMapTests
{
    private static List<TensorInfo> ThreeModelsForTest(string a = "0", string b = "1", string c = "2") =>
        [.. ModelForTest(a + "."), .. ModelForTest(b + "."), .. ModelForTest(c + ".")];

    [Fact]
    public void Only_linear1_fits_on_gpu0_because_room_is_kept_for_the_largest_layer()
    {
        var result = AutoDeviceMap.Infer(Tree(ModelForTest()), Budget((0, 200), (1, 200)));
        Equal(Expected(("linear1", 0), ("batchnorm", 1), ("linear2", 1)), Cleaned(result));
        Assert.Empty(result.MinimumAssignment);
        Assert.Empty(result.Warnings);
        Assert.Equal(100, result.LargestLayerBytes);
        Assert.Equal(["linear2"], result.LargestLayers);
    }

    [Fact]
    public void Devices_after_the_first_keep_no_room_for_the_largest_layer()
    {
        // Device 1 holds exactly batchnorm + linear2 (172 bytes).
        Equal(Expected(("linear1", 0), ("batchnorm", 1), ("linear2", 1)), Infer(Tree(ModelForTest()), Budget((0, 200), (1, 172), (2, 200))));
    }

    [Fact]
    public void Tying_weights_lets_the_whole_model_fit_on_gpu0()
    {
        // model.linear1.weight = model.linear2.weight; the state dict holds both names.
        List<TensorInfo> tensors =
        [
            T("linear1.weight", [5, 4]), T("linear1.bias", [4]), .. BatchNorm("batchnorm", 4), .. Linear("linear2", 4, 5),
        ];
        Equal(Expected(("", 0)), Infer(Tree(tensors, tied: [["linear1.weight", "linear2.weight"]]), Budget((0, 200), (1, 200))));
    }

    [Fact]
    public void Tied_weight_stored_once_gives_the_same_map()
    {
        // save_pretrained stores a tied tensor once; linear2.weight is then absent from the checkpoint.
        List<TensorInfo> tensors =
        [
            T("linear1.weight", [5, 4]), T("linear1.bias", [4]), .. BatchNorm("batchnorm", 4), T("linear2.bias", [5]),
        ];
        Equal(Expected(("", 0)), Infer(Tree(tensors, tied: [["linear1.weight", "linear2.weight"]]), Budget((0, 200), (1, 200))));
    }

    [Fact]
    public void A_bigger_model_is_split_at_the_layer_level()
    {
        Equal(Expected(("0", 0), ("1.linear1", 0), ("1.batchnorm", 0), ("1.linear2", 1), ("2", 1)),
            Infer(Tree(ThreeModelsForTest()), Budget((0, 500), (1, 500))));
    }

    [Fact]
    public void No_split_modules_are_placed_whole()
    {
        // no_split_module_classes=["ModelForTest"]: here a pattern naming the three ModelForTest blocks.
        Equal(Expected(("0", 0), ("1", 1), ("2", 1)), Infer(Tree(ThreeModelsForTest(), noSplit: ["*"]), Budget((0, 500), (1, 500))));
    }

    private static List<TensorInfo> Layers() => ThreeModelsForTest("layer1", "layer2", "layer3");

    [Fact]
    public void Tied_weights_across_layers_pull_the_tied_module_onto_the_same_device()
    {
        // model.layer3.linear2.weight = model.layer1.linear2.weight
        var tree = Tree(Layers(), tied: [["layer1.linear2.weight", "layer3.linear2.weight"]]);
        Equal(Expected(("layer1", 0), ("layer3.linear2", 0), ("layer2", 1), ("layer3.linear1", 1), ("layer3.batchnorm", 1)),
            Infer(tree, Budget((0, 400), (1, 500))));
    }

    [Fact]
    public void Three_weights_tied_together()
    {
        var tree = Tree(Layers(), tied: [["layer1.linear2.weight", "layer2.linear2.weight", "layer3.linear2.weight"]]);
        Equal(Expected(("layer1", 0), ("layer2.linear2", 0), ("layer3.linear2", 0), ("layer2.linear1", 1), ("layer2.batchnorm", 1),
                ("layer3.linear1", 1), ("layer3.batchnorm", 1)),
            Infer(tree, Budget((0, 400), (1, 500))));
    }

    [Fact]
    public void Two_groups_of_tied_weights()
    {
        var tree = Tree(Layers(), tied:
        [
            ["layer1.linear2.weight", "layer2.linear2.weight", "layer3.linear2.weight"],
            ["layer1.linear1.weight", "layer2.linear1.weight"],
        ]);
        Equal(Expected(("layer1", 0), ("layer2.linear1", 0), ("layer2.linear2", 0), ("layer3.linear2", 0), ("layer2.batchnorm", 1),
                ("layer3.linear1", 1), ("layer3.batchnorm", 1)),
            Infer(tree, Budget((0, 400), (1, 500))));
    }

    [Fact]
    public void Weight_and_bias_tied_to_the_same_module()
    {
        // linear3.weight = linear1.weight; linear3.bias = linear1.bias
        List<TensorInfo> tensors =
        [
            .. Linear("linear1", 4, 4), .. Linear("linear2", 6, 6), .. Linear("linear3", 4, 4), .. Linear("linear4", 6, 6),
        ];
        var tree = Tree(tensors, tied: [["linear1.weight", "linear3.weight"], ["linear1.bias", "linear3.bias"]]);
        Equal(Expected(("linear1", 0), ("linear2", 1), ("linear3", 0), ("linear4", 1)), Infer(tree, Budget((0, 250), (1, 400))));
    }

    [Fact]
    public void Tied_names_sharing_a_prefix_are_told_apart()
    {
        // compute.weight is also reachable as compute.weight_submodule.parameter; a 4-byte GPU forces splitting.
        var tree = Tree([.. Linear("compute", 3, 8)], tied: [["compute.weight", "compute.weight_submodule.parameter"]]);
        var result = AutoDeviceMap.Infer(tree, Budget((0, 4), ("cpu", 96000)));
        Equal(Expected(("", "cpu")), Cleaned(result));
        Assert.Contains(result.Warnings, w => w.Message.Contains("No module could be placed on cuda:0", StringComparison.Ordinal) && w.Code == BigModelErrorCode.DeviceLeftEmpty);
    }

    private static List<TensorInfo> WithBuffers(bool linear3)
    {
        List<TensorInfo> tensors =
        [
            .. Linear("linear1", 3, 4), T("linear1.test_buffer1", [10, 2]),
            .. BatchNorm("batchnorm", 4), T("batchnorm.test_buffer2", [10, 3]),
            .. Linear("linear2", 4, 5), T("linear2.test_buffer3", [10, 3]),
        ];
        if (linear3) tensors.AddRange([.. Linear("linear3", 4, 5), T("linear3.test_buffer4", [10, 2])]);
        return tensors;
    }

    private static readonly string[] TestBuffers = ["linear1.test_buffer1", "batchnorm.test_buffer2", "linear2.test_buffer3", "linear3.test_buffer4"];

    [Fact]
    public void Buffers_of_offloaded_modules_that_fit_no_gpu_raise_a_warning()
    {
        var tree = Tree(WithBuffers(false), buffers: TestBuffers);
        var result = AutoDeviceMap.Infer(tree, Budget((0, 400), ("cpu", 1_000_000_000)));
        Equal(Expected(("linear1", 0), ("batchnorm", "cpu"), ("linear2", "cpu")), Cleaned(result));
        Assert.Contains(result.Warnings, w => w.Message.Contains("buffers", StringComparison.Ordinal) && w.Message.Contains("280 B", StringComparison.Ordinal));

        var offloaded = AutoDeviceMap.Infer(tree, Budget((0, 400), ("cpu", 1_000_000_000)), offloadBuffers: true);
        Equal(Expected(("linear1", 0), ("batchnorm", "cpu"), ("linear2", "cpu")), Cleaned(offloaded));
        Assert.Empty(offloaded.Warnings);
    }

    [Fact]
    public void Buffers_that_fit_a_second_gpu_raise_no_warning()
    {
        var tree = Tree(WithBuffers(true), buffers: TestBuffers);
        var result = AutoDeviceMap.Infer(tree, Budget((0, 400), (1, 400), ("cpu", 1_000_000_000)));
        Equal(Expected(("linear1", 0), ("batchnorm", 1), ("linear2", "cpu"), ("linear3", "cpu")), Cleaned(result));
        Assert.Empty(result.Warnings);

        var small = AutoDeviceMap.Infer(tree, Budget((0, 400), (1, 200), ("cpu", 1_000_000_000)));
        Equal(Expected(("linear1", 0), ("batchnorm", 1), ("linear2", "cpu"), ("linear3", "cpu")), Cleaned(small));
        Assert.Single(small.Warnings);

        var offloaded = AutoDeviceMap.Infer(tree, Budget((0, 400), (1, 200), ("cpu", 1_000_000_000)), offloadBuffers: true);
        Equal(Expected(("linear1", 0), ("batchnorm", 1), ("linear2", "cpu"), ("linear3", "cpu")), Cleaned(offloaded));
        Assert.Empty(offloaded.Warnings);
    }

    private static List<TensorInfo> Inner(params (string Name, int In, int Out)[] linears) =>
        linears.SelectMany(l => Linear("module." + l.Name, l.In, l.Out)).ToList();

    [Fact]
    public void Fallback_allocation_fills_a_device_nothing_else_fits_on()
    {
        var tree = Tree(Inner(("linear1", 10, 4), ("linear2", 4, 4), ("linear3", 4, 8)));
        var without = AutoDeviceMap.Infer(tree, Budget((0, 256)));
        Assert.All(without.Placements, p => Assert.NotEqual(Device.Gpu(0), p.Device));
        Assert.Contains(Device.Gpu(0), without.MinimumAssignment.Keys);

        var with = AutoDeviceMap.Infer(tree, Budget((0, 256)), fallbackAllocation: true);
        Assert.Empty(with.MinimumAssignment);
        Equal(Expected(("module.linear1", "disk"), ("module.linear2", 0), ("module.linear3", "disk")), Cleaned(with));
    }

    [Fact]
    public void Fallback_allocation_with_nothing_small_enough_leaves_the_device_empty()
    {
        var tree = Tree(Inner(("linear1", 10, 10), ("linear2", 10, 10), ("linear3", 10, 10)));
        var result = AutoDeviceMap.Infer(tree, Budget((0, 30)), fallbackAllocation: true);
        Assert.All(result.Placements, p => Assert.NotEqual(Device.Gpu(0), p.Device));
        Assert.Contains(Device.Gpu(0), result.MinimumAssignment.Keys);
    }

    [Fact]
    public void Fallback_allocation_finds_submodules_deeper_down()
    {
        var tensors = new[] { "module1", "module2", "module3" }
            .SelectMany(m => Linear(m + ".submodule1", 20, 20).Concat(Linear(m + ".submodule2", 20, 20))).ToList();
        var result = AutoDeviceMap.Infer(Tree(tensors), Budget((0, 5000)), fallbackAllocation: true);
        Assert.Contains(result.Placements, p => p.Device == Device.Gpu(0));
    }

    [Fact]
    public void Fallback_allocation_keeps_tied_modules_together()
    {
        List<TensorInfo> tensors = [.. Linear("linear1", 10, 10), .. Linear("linear2", 10, 10)];
        var tree = Tree(tensors, tied: [["linear1.weight", "linear2.weight"]]);
        Equal(Expected(("", 0)), Infer(tree, Budget((0, 600)), fallback: true));
    }

    [Fact]
    public void Fallback_allocation_with_buffers_warns_about_them()
    {
        List<TensorInfo> tensors =
        [
            .. Linear("linear1", 10, 10), T("linear1.buffer1", [5]),
            .. BatchNorm("batchnorm", 10), T("batchnorm.buffer2", [5]),
            .. Linear("linear2", 10, 10), T("linear2.buffer3", [5]),
        ];
        var tree = Tree(tensors, buffers: ["linear1.buffer1", "batchnorm.buffer2", "linear2.buffer3"]);
        var result = AutoDeviceMap.Infer(tree, Budget((0, 678)), fallbackAllocation: true);
        Equal(Expected(("batchnorm", 0), ("linear1", "disk"), ("linear2", "disk")), Cleaned(result));
        Assert.Contains(result.Warnings, w => w.Message.Contains("offload the buffers", StringComparison.Ordinal) && w.Code == BigModelErrorCode.OffloadedBuffersMayNotFit);
    }

    [Fact]
    public void Tied_modules_whose_names_share_a_prefix_are_sized_exactly()
    {
        // test_get_module_size_with_ties: 15 Linear(10, 10) whose weights are all one tensor; "1" must not match "10.weight".
        // Module "0" with its 14 tied modules needs 440 + 14 × 40 = 1000 bytes; the largest other layer (40) stays free.
        var tensors = Enumerable.Range(0, 15).SelectMany(i => Linear(i.ToString(), 10, 10)).ToList();
        var tied = new[] { Enumerable.Range(0, 15).Select(i => $"{i}.weight").ToList() };
        var tree = Tree(tensors, tied: tied);
        Assert.Equal(1000, tree.TotalBytes);
        Equal(Expected(("", 0)), Infer(tree, Budget((0, 1040))));
        Equal(Expected(("", "disk")), Infer(tree, Budget((0, 1039))));
    }

    [Fact]
    public void Cpu_only_budget_keeps_room_for_the_largest_layer_before_disk()
    {
        // Only cpu: it is the main device, so 100 bytes (linear2) stay free and batchnorm spills to disk.
        Equal(Expected(("linear1", "cpu"), ("batchnorm", "disk"), ("linear2", "disk")), Infer(Tree(ModelForTest()), Budget(("cpu", 200))));
    }

    [Fact]
    public void Log_explains_every_placement()
    {
        var log = new List<string>();
        AutoDeviceMap.Infer(Tree(ModelForTest()), Budget((0, 200), (1, 200)), log: log);
        Assert.Contains(log, l => l.StartsWith("linear1 (64 B) → cuda:0: fits", StringComparison.Ordinal));
        Assert.Contains(log, l => l.StartsWith("batchnorm (72 B) does not fit on cuda:0 (36 B available)", StringComparison.Ordinal)
            && l.Contains("moving on to cuda:1", StringComparison.Ordinal) && l.Contains("100 B stays free", StringComparison.Ordinal));
        Assert.Contains(log, l => l.StartsWith("linear2 (100 B) → cuda:1: fits", StringComparison.Ordinal));
    }
}
