using BigModel.Tests.Sharding;
using BigModel.Tests.Support;
using Xunit.Abstractions;

namespace BigModel.Tests.Reliability;

/// <summary>
/// Conversions into an offload folder interrupted by SIGKILL and by a full disk, through the test harness
/// (tests/Harness). A short run of the trials; the measured run in docs/reliability.md uses the same commands with
/// more trials.
/// </summary>
public sealed class OffloadInterruptionTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Killed_conversions_leave_the_offload_file_absent_untouched_or_complete_and_the_next_run_cleans_up()
    {
        var seed = Environment.TickCount & 0x7FFFFFFF;
        var (code, text) = HarnessProcess.Run(TimeSpan.FromMinutes(5), "kill-trials", "--target", "offload", "--work", _dir.Path,
            "--trials", "8", "--size", "16MiB", "--seed", seed.ToString(System.Globalization.CultureInfo.InvariantCulture));
        output.WriteLine($"seed {seed}");
        output.WriteLine(text);
        Assert.True(code == 0, $"offload kill trials failed (exit {code}, seed {seed}):\n{text}");
        Assert.Contains("\"trials\":8", text, StringComparison.Ordinal);
        Assert.Contains("\"failures\":0", text, StringComparison.Ordinal);
    }

    [RootTmpfsFact]
    public void A_full_disk_under_the_offload_folder_is_DiskFull_and_leaves_no_files()
    {
        var (code, text) = HarnessProcess.Run(TimeSpan.FromMinutes(5), "disk-full", "--target", "offload", "--work", _dir.Path);
        output.WriteLine(text);
        Assert.True(code == 0, $"offload disk-full trial failed (exit {code}):\n{text}");
        Assert.Contains("disk-full: passed", text, StringComparison.Ordinal);
        Assert.Contains("offload, disk fills mid-write: DiskFull", text, StringComparison.Ordinal);
    }
}
