using System.Runtime.InteropServices;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Checkpoints.PyTorch;
using BigModel.DeviceMaps;
using BigModel.Errors;
using BigModel.IO;
using BigModel.Tests.Support;

namespace BigModel.Tests.IO;

/// <summary>
/// Paths that are not regular files (a named pipe, a link to a device) and files that vanish or cannot be opened end
/// in typed errors, promptly and without reading more than a small file's limit.
/// </summary>
public sealed partial class ReadableFileTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [LibraryImport("libc", EntryPoint = "mkfifo", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int MakeFifo(string path, uint mode);

    private string Fifo(string name)
    {
        var path = _dir.Combine(name);
        Assert.Equal(0, MakeFifo(path, 0x1B6));
        return path;
    }

    /// <summary>
    /// Runs <paramref name="read"/> on a named pipe and returns its error. Should the read block in open(), the pipe is
    /// opened for writing and closed, which releases it, and the test fails instead of hanging the suite.
    /// </summary>
    private static BigModelException RefusedWithoutBlocking(string fifo, Action read)
    {
        var run = Task.Run(() => Assert.Throws<BigModelException>(read));
        if (!run.Wait(TimeSpan.FromSeconds(10)))
        {
            using (new FileStream(fifo, FileMode.Open, FileAccess.Write)) { }
            run.Wait(TimeSpan.FromSeconds(10));
            Assert.Fail("reading a named pipe blocked until something wrote to it");
        }
        return run.Result;
    }

    [LinuxFact]
    public void A_named_pipe_called_config_json_is_refused_without_blocking()
    {
        var fifo = Fifo("config.json");
        var e = RefusedWithoutBlocking(fifo, () => ModelConfig.Load(fifo));
        Assert.Equal(BigModelErrorCode.NotARegularFile, e.Code);
        Assert.Equal(fifo, e.File);
    }

    [LinuxFact]
    public void Weight_files_that_are_named_pipes_are_refused_without_blocking()
    {
        var safetensors = Fifo("model.safetensors");
        Assert.Equal(BigModelErrorCode.NotARegularFile, RefusedWithoutBlocking(safetensors, () => SafetensorsHeader.Read(safetensors)).Code);
        var pytorch = Fifo("pytorch_model.bin");
        Assert.Equal(BigModelErrorCode.NotARegularFile, RefusedWithoutBlocking(pytorch, () => PyTorchCheckpointReader.ReadTensors(pytorch)).Code);
    }

    [LinuxFact]
    public void A_link_to_a_device_is_refused_before_anything_is_read()
    {
        var config = _dir.Combine("config.json");
        File.CreateSymbolicLink(config, "/dev/zero");
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(BigModelErrorCode.NotARegularFile, Assert.Throws<BigModelException>(() => ModelConfig.Load(config)).Code);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "reading the link allocated more than 1 MiB");
        var map = _dir.Combine("map.json");
        File.CreateSymbolicLink(map, "/dev/zero");
        Assert.Equal(BigModelErrorCode.NotARegularFile, Assert.Throws<BigModelException>(() => DeviceMap.Load(map)).Code);
    }

    [Fact]
    public void Small_files_are_read_through_a_bounded_stream()
    {
        var index = _dir.Combine("model.safetensors.index.json");
        File.WriteAllText(index, "");
        Assert.Equal(BigModelErrorCode.IndexNotJson, Assert.Throws<BigModelException>(() => ShardIndex.Read(index)).Code);
        var config = _dir.Combine("config.json");
        File.WriteAllBytes(config, new byte[200]);
        var e = Assert.Throws<BigModelException>(() => SmallFile.ReadAllBytes(config, 100, BigModelErrorCode.ConfigInvalidValue, BigModelErrorCode.ConfigNotJson, "config.json"));
        Assert.Equal(BigModelErrorCode.ConfigInvalidValue, e.Code);
        Assert.Equal(200, SmallFile.ReadAllBytes(config, 200, BigModelErrorCode.ConfigInvalidValue, BigModelErrorCode.ConfigNotJson, "config.json").Length);
        Assert.Equal(BigModelErrorCode.ConfigNotJson, Assert.Throws<BigModelException>(() => ModelConfig.Load(index)).Code);
        Assert.Equal(BigModelErrorCode.PathNotFound, Assert.Throws<BigModelException>(() => ModelConfig.Load(_dir.Combine("missing.json"))).Code);
    }

    [Fact]
    public void Opening_a_folder_as_a_weight_file_is_a_typed_error()
    {
        // .NET reports a folder opened as a file with UnauthorizedAccessException, which used to escape.
        var folder = _dir.Combine("model.safetensors");
        Directory.CreateDirectory(folder);
        Assert.Equal(BigModelErrorCode.NotARegularFile, Assert.Throws<BigModelException>(() => TensorData.Open(folder)).Code);
        Assert.Equal(BigModelErrorCode.NotARegularFile, Assert.Throws<BigModelException>(() => SafetensorsHeader.Read(folder)).Code);
    }

    [Fact]
    public void A_weight_file_that_vanished_is_a_typed_error_when_sizing_the_files()
    {
        var file = CheckpointBuilder.Safetensors(_dir.Combine("m", "model.safetensors"), [("w", DType.F32, [2])]);
        var checkpoint = Checkpoint.Open(file);
        File.Delete(file);
        var e = Assert.Throws<BigModelException>(() => checkpoint.FileBytes);
        Assert.Equal(BigModelErrorCode.PathNotFound, e.Code);
        Assert.Equal(file, e.File);
    }

    [Theory]
    [InlineData(3_000_000_000u)]
    [InlineData(70_000u)]
    public void A_device_index_beyond_any_machine_is_a_typed_error(uint index) =>
        Assert.Equal(BigModelErrorCode.InvalidDevice, Assert.Throws<BigModelException>(() => Device.FromObject(index)).Code);

    [Fact]
    public void Device_indices_of_every_integer_type_are_read() =>
        Assert.All(new object[] { (byte)1, (short)1, (ushort)1, 1, 1L, 1u, 1ul }, v => Assert.Equal(Device.Gpu(1), Device.FromObject(v)));

    [Fact]
    public void The_disk_full_errno_maps_to_disk_full_and_others_to_io_failure()
    {
        Assert.Equal(BigModelErrorCode.DiskFull, FileErrors.Map(new IOException("full", 28), "x").Code);
        Assert.Equal(BigModelErrorCode.IoFailure, FileErrors.Map(new IOException("bad", 5), "x").Code);
        Assert.Equal(BigModelErrorCode.IoFailure, FileErrors.Map(new UnauthorizedAccessException("denied"), "x").Code);
        Assert.Equal(BigModelErrorCode.PathNotFound, FileErrors.Map(new DirectoryNotFoundException("gone"), "x").Code);
    }
}
