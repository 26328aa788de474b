using BigModel.Checkpoints;
using BigModel.Checkpoints.PyTorch;
using BigModel.Errors;
using BigModel.Fuzz.Archives;
using BigModel.Tests.Support;

namespace BigModel.Tests.Checkpoints.PyTorch;

/// <summary>The zip layer: what torch writes is read, and every structural lie is refused with a typed error.</summary>
public sealed class ZipStructureTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>{"w": 2x2 F32 tensor on storage "0"}.</summary>
    private static byte[] OneTensorPickle() => new PickleBuilder().Proto(2).OrderedDict()
        .Mark().Str("w").TensorV2("FloatStorage", "0", 4, 0, [2, 2], [2, 1]).SetItems().Stop().ToArray();

    private static readonly byte[] FourFloats = TorchArchive.Floats(1, 2, 3, 4);

    private string Path(string name = "model.bin") => _dir.Combine(name);

    private string Write(ZipBuilder zip, string name = "model.bin") => zip.WriteFile(Path(name));

    private BigModelException Refused(ZipBuilder zip, PyTorchLimits? limits = null) =>
        Assert.Throws<BigModelException>(() => PyTorchCheckpointReader.ReadTensors(Write(zip), limits));

    private static ZipBuilder Standard() => TorchArchive.Builder(OneTensorPickle(), [("0", FourFloats)]);

    private static void AssertReadsTheTensor(string path)
    {
        var t = Assert.Single(PyTorchCheckpointReader.ReadTensors(path));
        Assert.Equal("w", t.Name);
        Assert.Equal(FourFloats, TensorData.ReadAll(t));
    }

    [Fact]
    public void Reads_the_layout_torch_writes()
    {
        var path = Write(Standard());
        var t = Assert.Single(PyTorchCheckpointReader.ReadTensors(path));
        Assert.Equal(DType.F32, t.DType);
        Assert.Equal(new long[] { 2, 2 }, t.Shape);
        Assert.Equal(16, t.ByteLength);
        Assert.Null(t.Strides);
        Assert.Equal(FourFloats, TensorData.ReadAll(t));
    }

    [Fact]
    public void Reads_archives_with_or_without_zip64_records_and_with_a_comment()
    {
        var zip = Standard();
        zip.Zip64End = false;
        zip.Comment = "written by a test";
        AssertReadsTheTensor(Write(zip, "a.bin"));

        var wide = new ZipBuilder();
        foreach (var e in Standard().Entries)
            wide.Add(new ZipBuilder.Entry { Name = e.Name, Data = e.Data, LocalPadding = e.LocalPadding, Zip64Fields = true });
        AssertReadsTheTensor(Write(wide, "b.bin"));
    }

    [Fact]
    public void Reads_a_storage_placed_beyond_4_GiB_through_zip64_fields()
    {
        // A sparse file: 4.5 GiB long on paper, a few KB on disk. Sparse files are a Linux/ext4/tmpfs feature here.
        if (!OperatingSystem.IsLinux()) return;
        var zip = new ZipBuilder();
        zip.Add(new ZipBuilder.Entry { Name = "big/data.pkl", Data = OneTensorPickle() });
        zip.Add(new ZipBuilder.Entry { Name = "big/data/0", Data = FourFloats, GapBefore = 9L << 29, Zip64Fields = true });
        var path = Write(zip);
        Assert.True(new FileInfo(path).Length > uint.MaxValue);
        var t = Assert.Single(PyTorchCheckpointReader.ReadTensors(path));
        Assert.True(t.DataOffset > uint.MaxValue);
        Assert.Equal(FourFloats, TensorData.ReadAll(t));
    }

    [Fact]
    public void Reads_a_deflated_data_pkl()
    {
        var zip = new ZipBuilder();
        zip.Add("archive/data.pkl", OneTensorPickle(), deflate: true);
        zip.Add("archive/data/0", FourFloats);
        AssertReadsTheTensor(Write(zip));
    }

    [Fact]
    public void Refuses_a_truncated_archive_at_every_cut()
    {
        var bytes = Standard().ToArray();
        foreach (var cut in new[] { 0, 3, 30, bytes.Length / 2, bytes.Length - 23, bytes.Length - 1 })
        {
            File.WriteAllBytes(Path(), bytes[..cut]);
            var e = Assert.Throws<BigModelException>(() => PyTorchCheckpointReader.ReadTensors(Path()));
            Assert.True(e.Code is BigModelErrorCode.PickleZipCorrupt or BigModelErrorCode.PickleNotZip, $"cut {cut}: {e.Code}");
        }
    }

    [Fact]
    public void Refuses_bytes_after_the_end_record()
    {
        var zip = Standard();
        zip.TrailingBytes = [1, 2, 3];
        Assert.Equal(BigModelErrorCode.PickleZipCorrupt, Refused(zip).Code);
    }

    [Fact]
    public void Refuses_overlapping_entries()
    {
        var zip = TorchArchive.Builder(OneTensorPickle());
        zip.Entries.Insert(1, new ZipBuilder.Entry { Name = "archive/data/0", Data = FourFloats, DeclaredCompressedSize = 40, DeclaredUncompressedSize = 40 });
        var e = Refused(zip);
        Assert.Equal(BigModelErrorCode.PickleZipCorrupt, e.Code);
        Assert.Contains("overlap", e.Message);
        Assert.Contains("archive/data/0", e.Message);
    }

    [Fact]
    public void Refuses_entry_data_beyond_the_central_directory_or_the_file()
    {
        var zip = TorchArchive.Builder(OneTensorPickle());
        zip.Add(new ZipBuilder.Entry { Name = "archive/data/0", Data = FourFloats, DeclaredCompressedSize = 1 << 20, DeclaredUncompressedSize = 1 << 20 });
        var e = Refused(zip);
        Assert.Equal(BigModelErrorCode.PickleZipCorrupt, e.Code);
        Assert.Contains("archive/data/0", e.Message);

        var far = TorchArchive.Builder(OneTensorPickle());
        far.Add(new ZipBuilder.Entry { Name = "archive/data/0", Data = FourFloats, Zip64Fields = true, DeclaredUncompressedSize = long.MaxValue - 5, DeclaredCompressedSize = long.MaxValue - 5 });
        Assert.Equal(BigModelErrorCode.PickleZipCorrupt, Refused(far).Code);
    }

    [Fact]
    public void Refuses_a_central_directory_that_is_not_where_the_end_record_says()
    {
        var bytes = Standard().ToArray();
        long realOffset = BitConverter.ToUInt32(bytes, bytes.Length - 6);
        var zip = Standard();
        zip.Zip64End = false;
        zip.DeclaredCentralDirectoryOffset = realOffset - 1;
        Assert.Equal(BigModelErrorCode.PickleZipCorrupt, Refused(zip).Code);

        var counted = Standard();
        counted.DeclaredEntryCount = 9;
        Assert.Equal(BigModelErrorCode.PickleZipCorrupt, Refused(counted).Code);
    }

    [Fact]
    public void Refuses_duplicate_encrypted_and_inconsistent_entries()
    {
        var duplicate = Standard().Add("archive/data/0", FourFloats);
        Assert.Contains("appears twice", Refused(duplicate).Message);

        var encrypted = TorchArchive.Builder(OneTensorPickle());
        encrypted.Add(new ZipBuilder.Entry { Name = "archive/data/0", Data = FourFloats, Flags = 1 });
        Assert.Contains("encrypted", Refused(encrypted).Message);

        var renamed = TorchArchive.Builder(OneTensorPickle());
        renamed.Add(new ZipBuilder.Entry { Name = "archive/data/0", Data = FourFloats, LocalName = "archive/data/1" });
        var e = Refused(renamed);
        Assert.Equal(BigModelErrorCode.PickleZipCorrupt, e.Code);
        Assert.Contains("different name", e.Message);

        var remethod = TorchArchive.Builder(OneTensorPickle());
        remethod.Add(new ZipBuilder.Entry { Name = "archive/data/0", Data = FourFloats, LocalMethod = 8 });
        Assert.Equal(BigModelErrorCode.PickleZipCorrupt, Refused(remethod).Code);

        var misplaced = TorchArchive.Builder(OneTensorPickle());
        misplaced.Add(new ZipBuilder.Entry { Name = "archive/data/0", Data = FourFloats, DeclaredLocalHeaderOffset = 7 });
        Assert.Equal(BigModelErrorCode.PickleZipCorrupt, Refused(misplaced).Code);
    }

    [Fact]
    public void Refuses_a_deflated_data_pkl_that_lies_about_its_size_or_crc()
    {
        var pickle = OneTensorPickle();
        ZipBuilder With(ZipBuilder.Entry pkl)
        {
            var zip = new ZipBuilder();
            zip.Add(pkl);
            zip.Add("archive/data/0", FourFloats);
            return zip;
        }
        var shorter = Refused(With(new ZipBuilder.Entry { Name = "archive/data.pkl", Data = pickle, Deflate = true, DeclaredUncompressedSize = pickle.Length - 10 }));
        Assert.Equal(BigModelErrorCode.PickleZipCorrupt, shorter.Code);
        Assert.Contains("more than", shorter.Message);
        var longer = Refused(With(new ZipBuilder.Entry { Name = "archive/data.pkl", Data = pickle, Deflate = true, DeclaredUncompressedSize = pickle.Length + 10 }));
        Assert.Contains($"inflates to {pickle.Length} bytes", longer.Message);
        var crc = Refused(With(new ZipBuilder.Entry { Name = "archive/data.pkl", Data = pickle, DeclaredCrc = 1234 }));
        Assert.Contains("CRC", crc.Message);
        var garbage = Refused(With(new ZipBuilder.Entry { Name = "archive/data.pkl", Data = pickle, MethodOverride = 8 }));
        Assert.Equal(BigModelErrorCode.PickleZipCorrupt, garbage.Code);
    }

    [Fact]
    public void Refuses_a_declared_inflation_no_deflate_stream_can_produce_before_inflating_anything()
    {
        var bomb = new ZipBuilder();
        bomb.Add(new ZipBuilder.Entry { Name = "archive/data.pkl", Data = new byte[100], Deflate = true, Zip64Fields = true, DeclaredUncompressedSize = 10L << 30 });
        var e = Refused(bomb);
        Assert.Equal(BigModelErrorCode.PickleZipCorrupt, e.Code);
        Assert.Contains("zip bomb", e.Message);
    }

    [Fact]
    public void Refuses_unknown_compression_methods()
    {
        var zip = new ZipBuilder();
        zip.Add(new ZipBuilder.Entry { Name = "archive/data.pkl", Data = OneTensorPickle(), MethodOverride = 12 });
        var e = Refused(zip);
        Assert.Equal(BigModelErrorCode.PickleZipEntryCompressed, e.Code);
        Assert.Contains("method 12", e.Message);
    }

    [Fact]
    public void Applies_the_central_directory_and_entry_count_limits()
    {
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(Standard(), new PyTorchLimits { MaxZipEntries = 3 }).Code);
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(Standard(), new PyTorchLimits { MaxCentralDirectoryBytes = 100 }).Code);
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(Standard(), new PyTorchLimits { MaxPickleBytes = 100 }).Code);
    }

    [Theory]
    [InlineData("../x")]
    [InlineData("archive/../../x")]
    [InlineData("/x")]
    [InlineData("\\x")]
    [InlineData("a\\b")]
    [InlineData("C:/x")]
    [InlineData("c:x")]
    [InlineData("archive/x\u0001")]
    [InlineData("archive/x\0y")]
    public void Refuses_entry_names_that_could_escape_a_folder(string name)
    {
        var zip = Standard().Add(name, [1]);
        var e = Refused(zip);
        Assert.Equal(BigModelErrorCode.PickleZipEntryUnsafe, e.Code);
        Assert.Equal(BigModelErrorCategory.Security, e.Category);
    }

    [Fact]
    public void Refuses_names_that_are_not_utf8()
    {
        var bytes = Standard().Add("archive/zz", [1]).ToArray();
        // Rewrite the two name bytes "zz" in the central directory only (the last occurrence).
        var at = bytes.AsSpan().LastIndexOf("archive/zz"u8);
        bytes[at + 8] = 0xFF;
        bytes[at + 9] = 0xFE;
        File.WriteAllBytes(Path(), bytes);
        var e = Assert.Throws<BigModelException>(() => PyTorchCheckpointReader.ReadTensors(Path()));
        Assert.Equal(BigModelErrorCode.PickleZipCorrupt, e.Code);
        Assert.Contains("UTF-8", e.Message);
    }

    [Fact]
    public void Finds_data_pkl_under_any_top_folder_but_only_one()
    {
        AssertReadsTheTensor(TorchArchive.Builder(OneTensorPickle(), [("0", FourFloats)], prefix: "pytorch_model").WriteFile(Path("a.bin")));
        AssertReadsTheTensor(TorchArchive.Builder(OneTensorPickle(), [("0", FourFloats)], prefix: "some-other_name.v2").WriteFile(Path("b.bin")));

        var two = Standard().Add("second/data.pkl", OneTensorPickle());
        Assert.Contains("several pickles", Refused(two).Message);

        var none = new ZipBuilder().Add("archive/version", "3"u8.ToArray());
        Assert.Equal(BigModelErrorCode.PickleZipEntryMissing, Refused(none).Code);
        var empty = new ZipBuilder();
        Assert.Equal(BigModelErrorCode.PickleZipEntryMissing, Refused(empty).Code);
    }

    [Fact]
    public void Storages_are_looked_up_under_the_prefix_of_data_pkl()
    {
        var zip = new ZipBuilder();
        zip.Add("model/data.pkl", OneTensorPickle());
        zip.Add("other/data/0", FourFloats);
        var e = Refused(zip);
        Assert.Equal(BigModelErrorCode.PickleZipEntryMissing, e.Code);
        Assert.Contains("model/data/0", e.Message);
    }

    [Fact]
    public void Checks_the_byte_order_record()
    {
        AssertReadsTheTensor(Write(Standard()));
        var big = TorchArchive.Builder(OneTensorPickle(), [("0", FourFloats)], byteorder: false).Add("archive/byteorder", "big"u8.ToArray());
        var e = Refused(big);
        Assert.Equal(BigModelErrorCode.UnsupportedFormat, e.Code);
        Assert.Contains("big-endian", e.Message);
        var odd = TorchArchive.Builder(OneTensorPickle(), [("0", FourFloats)], byteorder: false).Add("archive/byteorder", "middle"u8.ToArray());
        Assert.Equal(BigModelErrorCode.PickleMalformed, Refused(odd).Code);
        var huge = TorchArchive.Builder(OneTensorPickle(), [("0", FourFloats)], byteorder: false).Add("archive/byteorder", new byte[100]);
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(huge).Code);
    }

    [Fact]
    public void Refuses_torch_package_and_torchscript_layouts()
    {
        var package = Standard().Add("archive/.data/extern_modules", "os\n"u8.ToArray());
        var e = Refused(package);
        Assert.Equal(BigModelErrorCode.UnsupportedFormat, e.Code);
        Assert.Contains("torch.package", e.Message);
        var script = Standard().Add("archive/code/__torch__.py", "def f(): pass"u8.ToArray());
        Assert.Contains("TorchScript", Refused(script).Message);
    }

    [Fact]
    public void Says_what_a_file_that_is_not_a_zip_archive_is()
    {
        BigModelException Read(byte[] bytes)
        {
            File.WriteAllBytes(Path(), bytes);
            return Assert.Throws<BigModelException>(() => PyTorchCheckpointReader.ReadTensors(Path()));
        }
        Assert.Equal(BigModelErrorCode.PickleNotZip, Read([]).Code);
        Assert.Equal(BigModelErrorCode.PickleNotZip, Read("hello world"u8.ToArray()).Code);
        var safetensors = Read(SafetensorsBytes.Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[4]));
        Assert.Equal(BigModelErrorCode.PickleNotZip, safetensors.Code);
        Assert.Contains("safetensors", safetensors.Message);
        var bare = Read([0x80, 0x02, (byte)'}', (byte)'.']);
        Assert.Equal(BigModelErrorCode.PickleLegacyFormat, bare.Code);
        Assert.Contains("bare pickle", bare.Message);
        var tar = new byte[1024];
        "ustar"u8.CopyTo(tar.AsSpan(257));
        Assert.Equal(BigModelErrorCode.PickleLegacyFormat, Read(tar).Code);
        var missing = Assert.Throws<BigModelException>(() => PyTorchCheckpointReader.ReadTensors(_dir.Combine("absent.bin")));
        Assert.Equal(BigModelErrorCode.PathNotFound, missing.Code);
    }

    [Fact]
    public void A_storage_entry_must_be_stored_and_hold_exactly_the_declared_bytes()
    {
        var compressed = TorchArchive.Builder(OneTensorPickle());
        compressed.Add(new ZipBuilder.Entry { Name = "archive/data/0", Data = FourFloats, Deflate = true });
        var e = Refused(compressed);
        Assert.Equal(BigModelErrorCode.PickleZipEntryCompressed, e.Code);
        Assert.Contains("archive/data/0", e.Message);

        var shortEntry = TorchArchive.Builder(OneTensorPickle(), [("0", TorchArchive.Floats(1, 2, 3))]);
        var s = Refused(shortEntry);
        Assert.Equal(BigModelErrorCode.PickleStorageOutOfRange, s.Code);
        Assert.Contains("holds 12 bytes", s.Message);
    }
}
