using BigModel.DeviceMaps;
using static BigModel.Tests.DeviceMaps.AccelerateModels;

namespace BigModel.Tests.DeviceMaps;

/// <summary>Accelerate's test_get_balanced_memory (model of 236 bytes: linear1 64, batchnorm 72, linear2 100).</summary>
public sealed class BalancedMemoryTests
{
    private static string Balanced(MaxMemory memory, bool lowZero = false, bool detected = false) =>
        BalancedMemory.Compute(Tree(ModelForTest()), memory, lowZero, detected).ToJson();

    [Fact]
    public void Budgets_that_already_spread_the_model_are_kept()
    {
        Assert.Equal(Budget((0, 200), (1, 200)).ToJson(), Balanced(Budget((0, 200), (1, 200))));
    }

    [Fact]
    public void Non_contiguous_gpus_are_balanced()
    {
        Assert.Equal(Budget((0, 200), (2, 200)).ToJson(), Balanced(Budget((0, 200), (2, 200))));
    }

    [Fact]
    public void First_gpu_gets_its_share_plus_a_margin()
    {
        // 236 / 2 = 118, plus 1.25 × mean leaf module (78) = 97: 215.
        Assert.Equal(Budget((0, 215), (1, 300)).ToJson(), Balanced(Budget((0, 300), (1, 300))));
    }

    [Fact]
    public void Last_gpu_always_keeps_its_full_budget()
    {
        Assert.Equal(Budget((0, 215), (1, 500)).ToJson(), Balanced(Budget((0, 300), (1, 500))));
    }

    [Fact]
    public void One_gpu_and_cpu_are_left_alone()
    {
        Assert.Equal(Budget((0, 300), ("cpu", 1000)).ToJson(), Balanced(Budget((0, 300), ("cpu", 1000))));
    }

    [Fact]
    public void A_gpu_with_no_memory_does_not_count()
    {
        Assert.Equal(Budget((0, 0), (1, 215), (2, 300)).ToJson(), Balanced(Budget((0, 0), (1, 300), (2, 300))));
        Assert.Equal(Budget((0, 0), ("cpu", 100)).ToJson(), Balanced(Budget((0, 0), ("cpu", 100))));
    }

    [Fact]
    public void Balanced_low_0_leaves_gpu0_what_the_others_cannot_hold()
    {
        // Share 236 / (3 - 1) = 118 + 97; GPU 1 gets 215, GPU 2 keeps 300, which together hold the model: GPU 0 gets 0.
        Assert.Equal(Budget((0, 0), (1, 215), (2, 300)).ToJson(), Balanced(Budget((0, 300), (1, 300), (2, 300)), lowZero: true));
        // With small budgets elsewhere GPU 0 takes the rest: 236 - (100 + 100) = 36.
        Assert.Equal(Budget((0, 36), (1, 100), (2, 100)).ToJson(), Balanced(Budget((0, 300), (1, 100), (2, 100)), lowZero: true));
    }

    [Fact]
    public void A_measured_single_gpu_keeps_ten_percent_free()
    {
        Assert.Equal(Budget((0, 270), ("cpu", 1000)).ToJson(), Balanced(Budget((0, 300), ("cpu", 1000)), detected: true));
    }

    [Fact]
    public void No_split_blocks_widen_the_margin()
    {
        // Three ModelForTest blocks of 236 bytes kept whole: margin 1.25 × 236 = 295, share 708 / 2 = 354: 649.
        var tensors = ModelForTest("0.").Concat(ModelForTest("1.")).Concat(ModelForTest("2.")).ToList();
        var balanced = BalancedMemory.Compute(Tree(tensors, noSplit: ["*"]), Budget((0, 1000), (1, 1000)), false, false);
        Assert.Equal(Budget((0, 649), (1, 1000)).ToJson(), balanced.ToJson());
    }
}
