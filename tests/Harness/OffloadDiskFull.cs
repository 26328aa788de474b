using BigModel.Checkpoints;
using BigModel.Inference;

namespace BigModel.Harness;

/// <summary>
/// Conversions into an offload folder on a tmpfs too small for them: DiskFull, and an offload folder left as it was
/// (no temporary file, no lock file), both when the free-space check refuses and when the disk fills mid-write; a
/// conversion that fits succeeds, and its file survives a later conversion that fills the disk.
/// </summary>
internal static class OffloadDiskFull
{
    public static int Run(string work, string mount, long tmpfsSize)
    {
        int failures = 0;
        var (big, small) = DiskFullTrial.Sources(work, tmpfsSize, seed: 11);
        var folder = Path.Combine(mount, "offload");
        Directory.CreateDirectory(folder);

        failures += DiskFullTrial.Expect("offload, free-space check", () => Convert(big, folder, checkFreeSpace: true), folder, []);
        failures += DiskFullTrial.Expect("offload, disk fills mid-write", () => Convert(big, folder, checkFreeSpace: false), folder, []);

        var fitted = Convert(small, folder, checkFreeSpace: true);
        var file = fitted.Values.First().File;
        bool fitOk = Directory.GetFiles(folder) is [var only] && only == file
            && Same(CheckpointCheck.Digests(fitted.Values), CheckpointCheck.Digests(Checkpoint.Open(small)));
        Console.WriteLine($"small conversion onto the tmpfs: {(fitOk ? "ok" : "FAIL")} ({fitted.Count} tensors in {Path.GetFileName(file)})");
        if (!fitOk) failures++;

        var before = DiskFullTrial.Snapshot(folder);
        failures += DiskFullTrial.Expect("offload beside an earlier conversion, disk fills mid-write", () => Convert(big, folder, checkFreeSpace: false), folder, [Path.GetFileName(file)]);
        bool intact = DiskFullTrial.Snapshot(folder).SequenceEqual(before);
        Console.WriteLine($"earlier conversion after the failed one: {(intact ? "intact" : "FAIL: changed")}");
        if (!intact) failures++;
        return failures;
    }

    private static bool Same(Dictionary<string, string> a, Dictionary<string, string> b) =>
        a.Count == b.Count && a.All(p => b.TryGetValue(p.Key, out var other) && other == p.Value);

    private static IReadOnlyDictionary<string, TensorInfo> Convert(string source, string folder, bool checkFreeSpace) =>
        OffloadConverter.Convert(Checkpoint.Open(source).Tensors, folder, null, CancellationToken.None, checkFreeSpace);
}
