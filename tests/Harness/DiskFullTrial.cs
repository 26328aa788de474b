using System.Runtime.InteropServices;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Sharding;

namespace BigModel.Harness;

/// <summary>
/// Splits onto a tmpfs too small for the output. The split must fail with DiskFull and leave the file system as it
/// found it, both when the up-front free-space check refuses and when the disk really fills mid-write; an existing
/// destination replaced with Force must survive such a failure intact. A split that fits must succeed there. With
/// --target offload, the same for conversions into an offload folder (<see cref="OffloadDiskFull"/>).
/// </summary>
internal static partial class DiskFullTrial
{
    public static int Run(Arguments args)
    {
        var work = Path.GetFullPath(args.Required("work"));
        long tmpfsSize = args.Size("size", 16L << 20);
        bool offload = (args.Option("target") ?? "split") switch
        {
            "split" => false,
            "offload" => true,
            _ => throw new UsageException("--target must be split or offload."),
        };
        if (!OperatingSystem.IsLinux()) return Skip("the disk-full trial mounts a Linux tmpfs");
        if (geteuid() != 0) return Skip("mounting a tmpfs needs root");
        Directory.CreateDirectory(work);
        var mount = Path.Combine(work, "tmpfs");
        Directory.CreateDirectory(mount);
        var (mountCode, mountOutput) = ChildProcess.Run("mount", ["-t", "tmpfs", "-o", $"size={tmpfsSize}", "tmpfs", mount], TimeSpan.FromSeconds(30));
        if (mountCode != 0)
        {
            Directory.Delete(mount);
            return Skip($"mount -t tmpfs failed: {mountOutput.Trim()}");
        }
        int failures = 0;
        try
        {
            failures = offload ? OffloadDiskFull.Run(work, mount, tmpfsSize) : SplitOntoFullDisk(work, mount, tmpfsSize);
        }
        finally
        {
            var (code, output) = ChildProcess.Run("umount", [mount], TimeSpan.FromSeconds(30));
            if (code == 0) Directory.Delete(mount);
            else Console.WriteLine($"umount failed: {output.Trim()}");
        }
        Console.WriteLine(failures == 0 ? "disk-full: passed" : $"disk-full: {failures} failure(s)");
        return failures == 0 ? 0 : 1;
    }

    /// <summary>Two generated checkpoints under <paramref name="work"/>: one 2.5 × the tmpfs (cannot fit), one a quarter of it (fits).</summary>
    internal static (string Big, string Small) Sources(string work, long tmpfsSize, int seed)
    {
        var big = Path.Combine(work, "big");
        var small = Path.Combine(work, "small");
        Folders.Delete(big);
        Folders.Delete(small);
        GenerateCommand.Write(big, tmpfsSize * 5 / 2, 1L << 20, DType.F32, seed);
        GenerateCommand.Write(small, tmpfsSize / 4, 1L << 20, DType.F32, seed + 1);
        return (big, small);
    }

    private static int SplitOntoFullDisk(string work, string mount, long tmpfsSize)
    {
        int failures = 0;
        var (big, small) = Sources(work, tmpfsSize, seed: 9);
        var destination = Path.Combine(mount, "out");

        failures += Expect("free-space check", () => Split(big, destination, checkFreeSpace: true, force: false), mount, []);
        failures += Expect("disk fills mid-write", () => Split(big, destination, checkFreeSpace: false, force: false), mount, []);

        var fits = Split(small, destination, checkFreeSpace: true, force: false);
        var fitted = Directory.EnumerateFileSystemEntries(mount).Select(Path.GetFileName).ToArray();
        bool fitOk = fitted is ["out"] && Checkpoint.Open(destination).Tensors.Count == Checkpoint.Open(small).Tensors.Count;
        Console.WriteLine($"small split onto the tmpfs: {(fitOk ? "ok" : "FAIL")} ({fits.ShardFiles.Count} shard(s))");
        if (!fitOk) failures++;

        var before = Snapshot(destination);
        failures += Expect("replacing with -Force, disk fills mid-write", () => Split(big, destination, checkFreeSpace: false, force: true), mount, ["out"]);
        bool intact = Snapshot(destination).SequenceEqual(before);
        Console.WriteLine($"existing destination after the failed replace: {(intact ? "intact" : "FAIL: changed")}");
        if (!intact) failures++;
        return failures;
    }

    private static SplitResult Split(string source, string destination, bool checkFreeSpace, bool force) =>
        CheckpointSplitter.Split(Checkpoint.Open(source), destination,
            new SplitOptions { MaxShardSize = 4L << 20, CheckFreeSpace = checkFreeSpace, Force = force, ChunkBytes = 1 << 20 });

    internal static int Expect(string what, Action split, string mount, string[] remaining)
    {
        try
        {
            split();
            Console.WriteLine($"{what}: FAIL: it succeeded");
            return 1;
        }
        catch (BigModelException e) when (e.Code == BigModelErrorCode.DiskFull)
        {
            var left = Directory.EnumerateFileSystemEntries(mount).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
            bool clean = left.SequenceEqual(remaining);
            Console.WriteLine($"{what}: DiskFull ({e.Detail}); {(clean ? "nothing left behind" : "FAIL: left " + string.Join(", ", left))}");
            return clean ? 0 : 1;
        }
        catch (BigModelException e)
        {
            Console.WriteLine($"{what}: FAIL: {e.ErrorId} instead of DiskFull: {e.Message}");
            return 1;
        }
    }

    internal static List<(string, long, DateTime)> Snapshot(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Select(f => (f, new FileInfo(f).Length, File.GetLastWriteTimeUtc(f))).ToList();

    private static int Skip(string reason)
    {
        Console.WriteLine($"skipped: {reason}");
        return 3;
    }

    [LibraryImport("libc")]
    private static partial uint geteuid();
}
