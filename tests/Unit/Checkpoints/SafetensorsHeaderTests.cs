using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Tests.Support;

namespace BigModel.Tests.Checkpoints;

public sealed class SafetensorsHeaderTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string File(string header, byte[] data, ulong? declared = null) =>
        SafetensorsBytes.Write(_dir.Combine(Guid.NewGuid().ToString("N") + ".safetensors"), header, data, declared);

    [Fact]
    public void Reads_the_specification_example()
    {
        // The serialization example of the reference implementation: one F32 tensor [1,2,3].
        var path = File("{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}", SafetensorsBytes.Floats(0, 1, 2, 3, 4, 5));
        var header = SafetensorsHeader.Read(path);
        var t = Assert.Single(header.Tensors);
        Assert.Equal("attn.0", t.Name);
        Assert.Equal(DType.F32, t.DType);
        Assert.Equal(new long[] { 1, 2, 3 }, t.Shape);
        Assert.Equal(24, t.ByteLength);
        Assert.Equal(8 + header.HeaderLength, t.DataOffset);
        Assert.Equal(6, t.ElementCount);
    }

    [Fact]
    public void Reads_the_empty_file_with_metadata()
    {
        var path = File("{\"__metadata__\":{\"framework\":\"pt\"}}     ", []);
        var header = SafetensorsHeader.Read(path);
        Assert.Empty(header.Tensors);
        Assert.Equal("pt", header.Metadata!["framework"]);
    }

    [Fact]
    public void Orders_tensors_by_offset_whatever_the_declaration_order()
    {
        var path = File("{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},\"a\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[0,2]}}", new byte[4]);
        var header = SafetensorsHeader.Read(path);
        Assert.Equal(["a", "b"], header.Tensors.Select(t => t.Name));
    }

    [Theory]
    [InlineData("F4", 4, 2)]
    [InlineData("F6_E2M3", 4, 3)]
    [InlineData("F6_E3M2", 8, 6)]
    [InlineData("F8_E4M3", 3, 3)]
    [InlineData("F8_E5M2", 3, 3)]
    [InlineData("F8_E8M0", 3, 3)]
    [InlineData("BOOL", 5, 5)]
    [InlineData("C64", 2, 16)]
    [InlineData("U64", 2, 16)]
    [InlineData("BF16", 3, 6)]
    public void Sizes_every_dtype_of_the_specification(string dtype, long elements, long bytes)
    {
        var path = File($"{{\"t\":{{\"dtype\":\"{dtype}\",\"shape\":[{elements}],\"data_offsets\":[0,{bytes}]}}}}", new byte[bytes]);
        Assert.Equal(bytes, Assert.Single(SafetensorsHeader.Read(path).Tensors).ByteLength);
    }

    [Fact]
    public void Accepts_zero_sized_and_scalar_tensors()
    {
        var path = File("{\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[0,0]},\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", new byte[4]);
        var tensors = SafetensorsHeader.Read(path).Tensors;
        Assert.Equal(0, tensors.Single(t => t.Name == "empty").ElementCount);
        Assert.Equal(1, tensors.Single(t => t.Name == "scalar").ElementCount);
    }

    public static TheoryData<string, string, byte[], ulong?> InvalidFiles() => new()
    {
        { nameof(BigModelErrorCode.SafetensorsHeaderTooLarge), "{}", [], 100_000_001UL },
        { nameof(BigModelErrorCode.SafetensorsHeaderTruncated), "{}", [], 1000UL },
        { nameof(BigModelErrorCode.SafetensorsHeaderStartsBadly), "[]", [], null },
        { nameof(BigModelErrorCode.SafetensorsHeaderNotJson), "{\"a\":{\"dtype\":\"F32\",", [], null },
        { nameof(BigModelErrorCode.SafetensorsInvalidTensorEntry), "{\"a\":3}", [], null },
        { nameof(BigModelErrorCode.SafetensorsInvalidTensorEntry), "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", [], null },
        { nameof(BigModelErrorCode.SafetensorsUnknownDType), "{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", new byte[16], null },
        { nameof(BigModelErrorCode.SafetensorsInvalidShape), "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", new byte[4], null },
        { nameof(BigModelErrorCode.SafetensorsInvalidShape), "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", new byte[4], null },
        { nameof(BigModelErrorCode.SafetensorsInvalidShape), "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", new byte[4], null },
        { nameof(BigModelErrorCode.SafetensorsInvalidOffsets), "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", new byte[8], null },
        { nameof(BigModelErrorCode.SafetensorsInvalidOffsets), "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", new byte[6], null },
        { nameof(BigModelErrorCode.SafetensorsInvalidOffsets), "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", new byte[4], null },
        { nameof(BigModelErrorCode.SafetensorsTensorSizeMismatch), "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", new byte[4], null },
        { nameof(BigModelErrorCode.SafetensorsPartialByte), "{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", new byte[2], null },
        { nameof(BigModelErrorCode.SafetensorsDataLengthMismatch), "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[5], null },
        { nameof(BigModelErrorCode.SafetensorsDataLengthMismatch), "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", new byte[4], null },
        { nameof(BigModelErrorCode.SafetensorsDuplicateTensor), "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", new byte[2], null },
        { nameof(BigModelErrorCode.SafetensorsInvalidMetadata), "{\"__metadata__\":{\"format\":1}}", [], null },
        { nameof(BigModelErrorCode.SafetensorsRankTooLarge), "{\"a\":{\"dtype\":\"U8\",\"shape\":[" + string.Join(",", Enumerable.Repeat("1", 65)) + "],\"data_offsets\":[0,1]}}", new byte[1], null },
    };

    [Theory]
    [MemberData(nameof(InvalidFiles))]
    public void Rejects_invalid_headers_with_their_own_error_code(string expected, string header, byte[] data, ulong? declared)
    {
        var path = File(header, data, declared);
        var e = Assert.Throws<BigModelException>(() => SafetensorsHeader.Read(path));
        Assert.Equal(expected, e.Code.ToString());
        Assert.Equal(path, e.File);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void Rejects_invalid_utf8_bytes()
    {
        var path = _dir.Combine("bad-utf8.safetensors");
        var bytes = SafetensorsBytes.Raw("{\"ab\":1}", []);
        bytes[10] = 0xC3; // a lead byte followed by '"': not UTF-8
        System.IO.File.WriteAllBytes(path, bytes);
        Assert.Equal(BigModelErrorCode.SafetensorsHeaderNotUtf8, Assert.Throws<BigModelException>(() => SafetensorsHeader.Read(path)).Code);
    }

    [Fact]
    public void Rejects_files_shorter_than_the_length_field()
    {
        var path = _dir.Combine("tiny.safetensors");
        System.IO.File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Equal(BigModelErrorCode.SafetensorsFileTooSmall, Assert.Throws<BigModelException>(() => SafetensorsHeader.Read(path)).Code);
    }

    [Fact]
    public void Rejects_too_many_tensors_under_a_lowered_limit()
    {
        var path = File("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", new byte[2]);
        var e = Assert.Throws<BigModelException>(() => SafetensorsHeader.Read(path, new SafetensorsLimits { MaxTensors = 1 }));
        Assert.Equal(BigModelErrorCode.SafetensorsTooManyTensors, e.Code);
    }

    [Fact]
    public void Every_truncation_of_a_valid_file_is_a_typed_error()
    {
        var full = SafetensorsBytes.Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"__metadata__\":{\"format\":\"pt\"}}", SafetensorsBytes.Floats(1, 2));
        var path = _dir.Combine("cut.safetensors");
        for (int length = 0; length < full.Length; length++)
        {
            System.IO.File.WriteAllBytes(path, full[..length]);
            Assert.Throws<BigModelException>(() => SafetensorsHeader.Read(path));
        }
    }

    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"\\ud800\":{}}", 62)]
    [InlineData("{\"a\":{\"dtype\":\"\\ud800\",\"shape\":[1],\"data_offsets\":[0,4]}}", 22)]
    [InlineData("{\"__metadata__\":{\"\\udc00\":\"x\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 25)]
    public void An_unpaired_surrogate_escape_is_not_json_at_its_offset(string header, long offset)
    {
        var e = Assert.Throws<BigModelException>(() => SafetensorsHeader.Parse(System.Text.Encoding.UTF8.GetBytes(header), 8 + header.Length + 4, "x.safetensors"));
        Assert.Equal(BigModelErrorCode.SafetensorsHeaderNotJson, e.Code);
        Assert.Equal(offset, e.Offset);
    }
}
