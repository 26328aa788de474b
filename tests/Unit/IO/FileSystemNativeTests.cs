using BigModel.IO;
using BigModel.Tests.Support;

namespace BigModel.Tests.IO;

/// <summary>The Linux calls behind atomic replacement, lock hygiene and kernel copies; elsewhere they report "unsupported".</summary>
public sealed class FileSystemNativeTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [LinuxFact]
    public void Exchange_swaps_two_folders_and_no_replace_refuses_an_existing_target()
    {
        var a = _dir.Combine("a");
        var b = _dir.Combine("b");
        Directory.CreateDirectory(a);
        Directory.CreateDirectory(b);
        File.WriteAllText(Path.Combine(a, "x"), "from a");
        File.WriteAllText(Path.Combine(b, "x"), "from b");
        Assert.Equal(FileSystemNative.RenameOutcome.Done, FileSystemNative.Exchange(a, b, out _));
        Assert.Equal("from b", File.ReadAllText(Path.Combine(a, "x")));
        Assert.Equal("from a", File.ReadAllText(Path.Combine(b, "x")));
        Assert.Equal(FileSystemNative.RenameOutcome.Conflict, FileSystemNative.RenameNoReplaceAtomic(a, b, out var errno));
        Assert.Equal(17, errno);
        Assert.Equal(FileSystemNative.RenameOutcome.Done, FileSystemNative.RenameNoReplaceAtomic(a, _dir.Combine("c"), out _));
        Assert.False(Directory.Exists(a));
    }

    [LinuxFact]
    public void Link_count_drops_to_zero_when_an_open_file_is_deleted()
    {
        var path = _dir.Combine("lock");
        using var stream = new FileStream(path, FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        Assert.Equal(1, FileSystemNative.LinkCount(stream.SafeFileHandle));
        File.Delete(path);
        Assert.Equal(0, FileSystemNative.LinkCount(stream.SafeFileHandle));
    }

    [LinuxFact]
    public void Copy_range_copies_inside_the_kernel_at_the_given_offsets()
    {
        var source = _dir.Combine("source");
        var bytes = Enumerable.Range(0, 100_000).Select(i => (byte)(i * 7)).ToArray();
        File.WriteAllBytes(source, bytes);
        using var input = File.OpenHandle(source);
        using var output = File.OpenHandle(_dir.Combine("target"), FileMode.CreateNew, FileAccess.Write);
        long inOffset = 1000, outOffset = 10;
        Assert.Equal(50_000, FileSystemNative.CopyRange(input, ref inOffset, output, ref outOffset, 50_000));
        Assert.Equal(51_000, inOffset);
        Assert.Equal(50_010, outOffset);
        long atEnd = bytes.Length;
        Assert.Equal(0, FileSystemNative.CopyRange(input, ref atEnd, output, ref outOffset, 10));
        output.Dispose();
        var copied = File.ReadAllBytes(_dir.Combine("target"));
        Assert.Equal(bytes.AsSpan(1000, 50_000).ToArray(), copied.AsSpan(10).ToArray());
    }
}

/// <summary>A fact about Linux system calls; reported as skipped, with the reason, on other systems.</summary>
public sealed class LinuxFactAttribute : FactAttribute
{
    public LinuxFactAttribute()
    {
        if (!OperatingSystem.IsLinux()) Skip = "tests a Linux system call";
    }
}
