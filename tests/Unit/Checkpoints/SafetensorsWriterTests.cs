using BigModel.Checkpoints;
using BigModel.Tests.Support;

namespace BigModel.Tests.Checkpoints;

public sealed class SafetensorsWriterTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string Write(string path, IReadOnlyList<(TensorSpec Spec, byte[] Data)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var layout = SafetensorsLayout.Create(tensors.Select(t => t.Spec), metadata);
        using var writer = new SafetensorsWriter(path, layout);
        foreach (var (spec, _) in layout.Tensors)
            writer.Write(tensors.Single(t => t.Spec == spec).Data);
        writer.Complete();
        return path;
    }

    [Fact]
    public void Writes_the_reference_serialization_byte_for_byte()
    {
        // Expected bytes from the reference implementation's test_serialization.
        byte[] expected =
        [
            64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
            116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
            58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
            101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
            0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
        ];
        var path = Write(_dir.Combine("a.safetensors"), [(new TensorSpec("attn.0", DType.F32, [1, 2, 3]), SafetensorsBytes.Floats(0, 1, 2, 3, 4, 5))]);
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    [Fact]
    public void Pads_the_header_with_spaces_to_eight_bytes()
    {
        // test_serialization_forced_alignement: a shorter name needs 7 spaces of padding.
        var path = Write(_dir.Combine("b.safetensors"), [(new TensorSpec("attn0", DType.F32, [1, 1, 2, 3]), SafetensorsBytes.Floats(0, 1, 2, 3, 4, 5))]);
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(72, bytes[0]);
        Assert.Equal("       ", System.Text.Encoding.ASCII.GetString(bytes, 8 + 65, 7));
    }

    [Fact]
    public void Sorts_by_descending_dtype_then_name_and_reads_back()
    {
        var path = Write(_dir.Combine("c.safetensors"),
        [
            (new TensorSpec("z", DType.U8, [3]), [1, 2, 3]),
            (new TensorSpec("b", DType.F32, [1]), SafetensorsBytes.Floats(7)),
            (new TensorSpec("a", DType.F32, [1]), SafetensorsBytes.Floats(9)),
            (new TensorSpec("m", DType.I64, [1]), new byte[8]),
        ], new Dictionary<string, string> { ["format"] = "pt" });
        var header = SafetensorsHeader.Read(path);
        Assert.Equal(["m", "a", "b", "z"], header.Tensors.Select(t => t.Name));
        Assert.Equal("pt", header.Metadata!["format"]);
        Assert.Equal(0, (header.DataStart) % 8);
        Assert.Equal(SafetensorsBytes.Floats(9), TensorData.ReadAll(header.Tensors[1]));
    }

    [Fact]
    public void Escapes_names_as_serde_json_does()
    {
        var layout = SafetensorsLayout.Create([new TensorSpec("a\"b\\c\u0001é", DType.U8, [0])]);
        var text = System.Text.Encoding.UTF8.GetString(layout.Header).TrimEnd();
        Assert.Equal("{\"a\\\"b\\\\c\\u0001é\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", text);
    }

    [Fact]
    public void Refuses_to_complete_with_missing_bytes()
    {
        var layout = SafetensorsLayout.Create([new TensorSpec("a", DType.F32, [2])]);
        using var writer = new SafetensorsWriter(_dir.Combine("d.safetensors"), layout);
        writer.Write(new byte[4]);
        Assert.Throws<BigModel.Errors.BigModelException>(writer.Complete);
    }

    [Fact]
    public void An_abandoned_writer_leaves_no_file_behind()
    {
        var layout = SafetensorsLayout.Create([new TensorSpec("a", DType.F32, [2])]);
        var path = _dir.Combine("abandoned.safetensors");
        using (var writer = new SafetensorsWriter(path, layout))
        {
            writer.Write(new byte[4]);
        }
        Assert.False(File.Exists(path));
        using (var writer = new SafetensorsWriter(path, layout))
        {
            writer.Write(new byte[8]);
            writer.Complete();
        }
        Assert.Equal(2, SafetensorsHeader.Read(path).Tensors[0].ElementCount);
    }

    [Fact]
    public void A_file_that_cannot_be_reserved_is_removed_and_reported()
    {
        // No file system here holds 2^58 bytes, so reserving the length fails after the file was created.
        var layout = SafetensorsLayout.Create([new TensorSpec("a", DType.U8, [1L << 58])]);
        var path = _dir.Combine("huge.safetensors");
        var e = Assert.Throws<BigModel.Errors.BigModelException>(() => new SafetensorsWriter(path, layout));
        Assert.Contains(e.Code, new[] { BigModel.Errors.BigModelErrorCode.IoFailure, BigModel.Errors.BigModelErrorCode.DiskFull });
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void A_writer_in_a_missing_folder_is_a_typed_error()
    {
        var layout = SafetensorsLayout.Create([new TensorSpec("a", DType.U8, [1])]);
        Assert.Equal(BigModel.Errors.BigModelErrorCode.PathNotFound,
            Assert.Throws<BigModel.Errors.BigModelException>(() => new SafetensorsWriter(_dir.Combine("no", "such.safetensors"), layout)).Code);
    }
}
