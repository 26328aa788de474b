using BigModel.Inference;

namespace BigModel.Tests.Inference;

public sealed class ProcessorBudgetTests
{
    [Theory]
    [InlineData("0-1", 2)]
    [InlineData("0", 1)]
    [InlineData("0-3,8,10-11", 7)]
    [InlineData("", null)]
    [InlineData("3-1", null)]
    [InlineData("a-b", null)]
    public void Counts_kernel_cpu_lists(string list, int? expected) => Assert.Equal(expected, ProcessorBudget.CountCpuList(list));

    [Fact]
    public void Reads_the_affinity_from_proc_status()
    {
        Assert.Equal(4, ProcessorBudget.AffinityCount("Name:\tx\nCpus_allowed:\tf\nCpus_allowed_list:\t0-3\nMems_allowed:\t1\n"));
        Assert.Null(ProcessorBudget.AffinityCount("Name:\tx\n"));
    }

    [Theory]
    [InlineData("max 100000", null)]
    [InlineData("150000 100000", 1.5)]
    [InlineData("200000 100000\n", 2.0)]
    [InlineData("garbage", null)]
    public void Parses_cgroup_v2_cpu_max(string text, double? expected) => Assert.Equal(expected, ProcessorBudget.ParseCpuMax(text));

    [Fact]
    public void Takes_the_tightest_quota_on_the_cgroup_path_and_its_ancestors()
    {
        var files = new Dictionary<string, string>
        {
            ["/sys/fs/cgroup/cpu/docker/abc/cpu.cfs_quota_us"] = "300000",
            ["/sys/fs/cgroup/cpu/docker/abc/cpu.cfs_period_us"] = "100000",
            ["/sys/fs/cgroup/cpu/docker/cpu.cfs_quota_us"] = "150000",
            ["/sys/fs/cgroup/cpu/docker/cpu.cfs_period_us"] = "100000",
            ["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"] = "-1",
            ["/sys/fs/cgroup/cpu/cpu.cfs_period_us"] = "100000",
        };
        Assert.Equal(1.5, ProcessorBudget.CgroupQuota("4:memory:/x\n1:cpu,cpuacct:/docker/abc\n", p => files.GetValueOrDefault(p)));
        var v2 = new Dictionary<string, string> { ["/sys/fs/cgroup/user.slice/cpu.max"] = "50000 100000", ["/sys/fs/cgroup/cpu.max"] = "max 100000" };
        Assert.Equal(0.5, ProcessorBudget.CgroupQuota("0::/user.slice\n", p => v2.GetValueOrDefault(p)));
        Assert.Null(ProcessorBudget.CgroupQuota("0::/\n", p => null));
    }

    [Fact]
    public void This_process_has_at_least_one_core_and_no_more_than_the_machine()
    {
        Assert.InRange(ProcessorBudget.AvailableCores(), 1, Environment.ProcessorCount);
    }
}
