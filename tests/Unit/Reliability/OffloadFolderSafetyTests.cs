using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Inference;
using BigModel.Tests.Support;

namespace BigModel.Tests.Reliability;

/// <summary>
/// Whoever can replace a converted offload file decides the weights a model runs with: links planted in an offload
/// folder are never followed, and an offload folder inside a folder anyone may write to must be a private folder of
/// this user.
/// </summary>
public sealed class OffloadFolderSafetyTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private TensorInfo[] Source()
    {
        var path = _dir.Combine("source.safetensors");
        if (!File.Exists(path)) SafetensorsBytes.Write(path, """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", SafetensorsBytes.Floats(1, 2));
        return [.. SafetensorsHeader.Read(path).Tensors];
    }

    [Fact]
    public void A_link_planted_under_the_converted_name_is_replaced_not_followed()
    {
        var folder = _dir.Combine("offload");
        var file = OffloadConverter.Convert(Source(), folder, null, CancellationToken.None)["a"].File;
        // An attacker swaps the converted file for a link to a file of theirs with the same header.
        var planted = _dir.Combine("planted.safetensors");
        SafetensorsBytes.Write(planted, """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", SafetensorsBytes.Floats(666, 666));
        var before = File.ReadAllBytes(planted);
        File.Delete(file);
        File.CreateSymbolicLink(file, planted);

        var converted = OffloadConverter.Convert(Source(), folder, null, CancellationToken.None)["a"];

        Assert.Equal(file, converted.File);
        Assert.Null(new FileInfo(file).LinkTarget);
        Assert.Equal(SafetensorsBytes.Floats(1, 2), TensorData.ReadAll(converted));
        Assert.Equal(before, File.ReadAllBytes(planted));
    }

    [Fact]
    public void Reusing_a_finished_file_removes_what_a_killed_writer_left_unless_a_writer_is_alive()
    {
        var folder = _dir.Combine("offload");
        var file = OffloadConverter.Convert(Source(), folder, null, CancellationToken.None)["a"].File;
        var lockFile = OffloadConverter.LockPath(file);
        var temp = file + OffloadConverter.TempMarker + "0123456789ab";

        // A live writer's lock and temporary file are left alone.
        File.WriteAllBytes(temp, [1, 2, 3]);
        using (BigModel.IO.DestinationLock.Acquire(lockFile, file))
        {
            Assert.Equal(file, OffloadConverter.Convert(Source(), folder, null, CancellationToken.None)["a"].File);
            Assert.True(File.Exists(temp));
            Assert.True(File.Exists(lockFile));
        }

        // A killed writer's: its lock file outlives it (the lock itself does not).
        File.WriteAllBytes(lockFile, []);
        Assert.Equal(file, OffloadConverter.Convert(Source(), folder, null, CancellationToken.None)["a"].File);
        Assert.Equal([file], Directory.GetFiles(folder));
    }

    [Fact]
    public void In_a_folder_anyone_may_write_to_the_offload_folder_is_created_private()
    {
        if (OperatingSystem.IsWindows()) return;
        var shared = SharedFolder();
        var folder = Path.Combine(shared, "offload");
        OffloadConverter.Convert(Source(), folder, null, CancellationToken.None);
        var mode = File.GetUnixFileMode(folder);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, mode);
    }

    [Fact]
    public void In_a_folder_anyone_may_write_to_an_offload_folder_others_may_write_to_is_refused()
    {
        if (OperatingSystem.IsWindows()) return;
        var folder = Path.Combine(SharedFolder(), "offload");
        Directory.CreateDirectory(folder);
        File.SetUnixFileMode(folder, (UnixFileMode)0x1FF); // 0777
        var e = Assert.Throws<BigModelException>(() => OffloadConverter.Convert(Source(), folder, null, CancellationToken.None));
        Assert.Equal(BigModelErrorCode.InvalidArgument, e.Code);
        Assert.Contains("may be written by other users", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(folder));
    }

    [Fact]
    public void In_a_folder_anyone_may_write_to_an_offload_folder_that_is_a_link_is_refused()
    {
        if (OperatingSystem.IsWindows()) return;
        var elsewhere = _dir.Combine("elsewhere");
        Directory.CreateDirectory(elsewhere);
        var folder = Path.Combine(SharedFolder(), "offload");
        Directory.CreateSymbolicLink(folder, elsewhere);
        var e = Assert.Throws<BigModelException>(() => OffloadConverter.Convert(Source(), folder, null, CancellationToken.None));
        Assert.Equal(BigModelErrorCode.InvalidArgument, e.Code);
        Assert.Contains("symbolic link", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(elsewhere));
    }

    /// <summary>A folder like /tmp: writable by everyone, sticky.</summary>
    private string SharedFolder()
    {
        var shared = _dir.Combine("shared");
        Directory.CreateDirectory(shared);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(shared, (UnixFileMode)0x3FF); // 1777
        return shared;
    }
}
