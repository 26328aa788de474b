using System.Diagnostics;
using BigModel.Tests.Support;
using Xunit.Abstractions;

namespace BigModel.Tests.Sharding;

/// <summary>
/// Interruptions that need a separate process: SIGKILL at random moments and phases, and a genuinely full disk.
/// Both run the test harness (tests/Harness), which the Pester and CI layers can also drive directly.
/// </summary>
public sealed class SplitInterruptionTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Killed_splits_leave_the_destination_absent_or_complete_and_the_next_run_cleans_up()
    {
        var seed = Environment.TickCount & 0x7FFFFFFF;
        var (code, text) = RunHarness(TimeSpan.FromMinutes(8), "kill-trials", "--work", _dir.Path, "--trials", "32", "--seed", seed.ToString());
        output.WriteLine($"seed {seed}");
        output.WriteLine(text);
        Assert.True(code == 0, $"kill trials failed (exit {code}, seed {seed}):\n{text}");
        Assert.Contains("\"trials\":32", text, StringComparison.Ordinal);
        Assert.Contains("\"failures\":0", text, StringComparison.Ordinal);
    }

    [RootTmpfsFact]
    public void A_full_disk_is_reported_as_DiskFull_and_leaves_no_files()
    {
        var (code, text) = RunHarness(TimeSpan.FromMinutes(5), "disk-full", "--work", _dir.Path);
        output.WriteLine(text);
        Assert.True(code == 0, $"disk-full trial failed (exit {code}):\n{text}");
        Assert.Contains("disk-full: passed", text, StringComparison.Ordinal);
    }

    private static (int Code, string Output) RunHarness(TimeSpan timeout, params string[] args) => HarnessProcess.Run(timeout, args);
}

/// <summary>A fact that mounts a tmpfs; reported as skipped, with the reason, unless running as root on Linux with mount working.</summary>
public sealed class RootTmpfsFactAttribute : FactAttribute
{
    private static readonly Lazy<string?> Reason = new(Probe);

    public RootTmpfsFactAttribute()
    {
        if (Reason.Value is { } reason) Skip = reason;
    }

    private static string? Probe()
    {
        if (!OperatingSystem.IsLinux()) return "the disk-full test mounts a Linux tmpfs";
        if (Environment.UserName != "root" && !File.ReadLines("/proc/self/status").Any(l => l.StartsWith("Uid:", StringComparison.Ordinal) && l.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1] == "0"))
            return "the disk-full test mounts a tmpfs, which needs root";
        var point = Path.Combine(Path.GetTempPath(), "bigmodel-tmpfs-probe-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(point);
        try
        {
            if (Run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", point) is { } failure) return $"mount -t tmpfs is not permitted here: {failure}";
            Run("umount", point);
            return null;
        }
        finally
        {
            try { Directory.Delete(point); } catch (IOException) { }
        }
    }

    private static string? Run(string program, params string[] args)
    {
        try
        {
            var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in args) info.ArgumentList.Add(a);
            using var process = Process.Start(info)!;
            var error = process.StandardError.ReadToEnd();
            process.WaitForExit();
            return process.ExitCode == 0 ? null : error.Trim();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return e.Message;
        }
    }
}
