using BigModel.Memory;
using BigModel.Tests.Support;

namespace BigModel.Tests.DeviceMaps;

/// <summary>Available RAM under cgroup v1 and v2 limits, on fake /proc and /sys trees.</summary>
public sealed class SystemMemoryTests : IDisposable
{
    private const long GiB = 1L << 30;
    private const long MiB = 1L << 20;
    private readonly TempDirectory _root = new();

    public void Dispose() => _root.Dispose();

    private void Write(string path, string text)
    {
        var full = _root.Path + path;
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, text);
    }

    private void Meminfo(long availableKb = 20 * 1024 * 1024, long totalKb = 24 * 1024 * 1024) =>
        Write("/proc/meminfo", $"MemTotal:       {totalKb} kB\nMemFree:         1000 kB\nMemAvailable:   {availableKb} kB\nBuffers:          10 kB\n");

    [Fact]
    public void Without_a_cgroup_limit_mem_available_is_the_answer()
    {
        Meminfo();
        Write("/proc/self/cgroup", "0::/user.slice\n");
        Write("/proc/self/mountinfo", "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n");
        Write("/sys/fs/cgroup/user.slice/memory.max", "max\n");
        Write("/sys/fs/cgroup/user.slice/memory.current", "123456\n");
        var s = SystemMemory.ReadLinux(_root.Path)!;
        Assert.Equal(20 * GiB, s.AvailableBytes);
        Assert.Equal(24 * GiB, s.TotalBytes);
        Assert.Null(s.CgroupLimitBytes);
    }

    [Fact]
    public void Cgroup_v2_limit_minus_usage_caps_available_memory()
    {
        Meminfo();
        Write("/proc/self/cgroup", "0::/system.slice/app.service\n");
        Write("/proc/self/mountinfo", "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
        Write("/sys/fs/cgroup/system.slice/app.service/memory.max", $"{GiB}\n");
        Write("/sys/fs/cgroup/system.slice/app.service/memory.current", $"{512 * MiB}\n");
        Write("/sys/fs/cgroup/system.slice/app.service/memory.stat", $"anon 1000\nfile 2000\ninactive_file {100 * MiB}\nactive_file 5\n");
        var s = SystemMemory.ReadLinux(_root.Path)!;
        // Reclaimable page cache does not count as used: 1 GiB - (512 MiB - 100 MiB).
        Assert.Equal(GiB - 412 * MiB, s.AvailableBytes);
        Assert.Equal(GiB, s.TotalBytes);
        Assert.Equal(2, s.CgroupVersion);
        Assert.Equal(GiB, s.CgroupLimitBytes);
    }

    [Fact]
    public void A_tighter_limit_on_an_ancestor_cgroup_wins()
    {
        Meminfo();
        Write("/proc/self/cgroup", "0::/system.slice/app.service\n");
        Write("/proc/self/mountinfo", "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        Write("/sys/fs/cgroup/system.slice/app.service/memory.max", $"{GiB}\n");
        Write("/sys/fs/cgroup/system.slice/app.service/memory.current", $"{100 * MiB}\n");
        Write("/sys/fs/cgroup/system.slice/memory.max", $"{500 * MiB}\n");
        Write("/sys/fs/cgroup/system.slice/memory.current", $"{300 * MiB}\n");
        var s = SystemMemory.ReadLinux(_root.Path)!;
        Assert.Equal(200 * MiB, s.AvailableBytes);
        Assert.EndsWith("/sys/fs/cgroup/system.slice", s.CgroupPath, StringComparison.Ordinal);
    }

    [Fact]
    public void Cgroup_v1_limit_is_read_from_the_memory_controller()
    {
        Meminfo();
        Write("/proc/self/cgroup", "12:pids:/docker/abc\n4:cpuset,memory:/docker/abc\n1:name=systemd:/docker/abc\n");
        Write("/proc/self/mountinfo",
            "35 31 0:32 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n36 31 0:33 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,cpuset,memory\n");
        // Inside the container the cgroup is the mount root, so the path maps to the mount point itself.
        Write("/sys/fs/cgroup/memory/memory.limit_in_bytes", $"{2 * GiB}\n");
        Write("/sys/fs/cgroup/memory/memory.usage_in_bytes", $"{GiB}\n");
        Write("/sys/fs/cgroup/memory/memory.stat", $"cache 10\nhierarchical_memory_limit {3 * GiB}\ntotal_inactive_file {256 * MiB}\n");
        var s = SystemMemory.ReadLinux(_root.Path)!;
        Assert.Equal(2 * GiB - (GiB - 256 * MiB), s.AvailableBytes);
        Assert.Equal(1, s.CgroupVersion);
        Assert.Contains("cgroup v1", s.Source, StringComparison.Ordinal);
    }

    [Fact]
    public void Cgroup_v1_hierarchical_limit_applies_when_tighter()
    {
        Meminfo();
        Write("/proc/self/cgroup", "4:memory:/batch/job1\n");
        Write("/proc/self/mountinfo", "36 31 0:33 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
        Write("/sys/fs/cgroup/memory/batch/job1/memory.limit_in_bytes", "9223372036854771712\n");
        Write("/sys/fs/cgroup/memory/batch/job1/memory.usage_in_bytes", $"{100 * MiB}\n");
        Write("/sys/fs/cgroup/memory/batch/job1/memory.stat", $"hierarchical_memory_limit {GiB}\n");
        var s = SystemMemory.ReadLinux(_root.Path)!;
        Assert.Equal(GiB - 100 * MiB, s.AvailableBytes);
    }

    [Fact]
    public void Unlimited_cgroup_v1_leaves_mem_available()
    {
        Meminfo(availableKb: 1024 * 1024);
        Write("/proc/self/cgroup", "4:memory:/\n");
        Write("/proc/self/mountinfo", "36 31 0:33 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
        Write("/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
        Write("/sys/fs/cgroup/memory/memory.usage_in_bytes", "3013890048\n");
        var s = SystemMemory.ReadLinux(_root.Path)!;
        Assert.Equal(GiB, s.AvailableBytes);
        Assert.Equal("/proc/meminfo MemAvailable", s.Source);
    }

    [Fact]
    public void Old_kernels_without_mem_available_use_free_plus_cache()
    {
        Write("/proc/meminfo", "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 30 kB\n");
        var s = SystemMemory.ReadLinux(_root.Path)!;
        Assert.Equal(150 * 1024, s.AvailableBytes);
    }

    [Fact]
    public void Unreadable_meminfo_yields_nothing()
    {
        Assert.Null(SystemMemory.ReadLinux(_root.Path));
    }

    [Fact]
    public void This_machine_reports_positive_available_memory()
    {
        var s = SystemMemory.Read();
        Assert.True(s.AvailableBytes > 0);
        Assert.True(s.AvailableBytes <= s.TotalBytes || s.CgroupLimitBytes is null);
    }
}
