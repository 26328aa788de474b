using System.Diagnostics;
using BigModel.Checkpoints;
using BigModel.Checkpoints.PyTorch;
using BigModel.Errors;
using BigModel.Fuzz.Archives;
using BigModel.Tests.Support;

namespace BigModel.Tests.Checkpoints.PyTorch;

/// <summary>The pickle machine: torch's rebuild semantics, Python's container semantics, and its limits.</summary>
public sealed class RestrictedUnpicklerTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private int _files;

    public void Dispose() => _dir.Dispose();

    private static readonly byte[] EightFloats = TorchArchive.Floats(0, 1, 2, 3, 4, 5, 6, 7);

    private IReadOnlyList<TensorInfo> Read(byte[] pickle, IEnumerable<(string, byte[])>? storages = null, PyTorchLimits? limits = null) =>
        PyTorchCheckpointReader.ReadTensors(TorchArchive.Write(_dir.Combine($"m{_files++}.bin"), pickle, storages ?? [("0", EightFloats)]), limits);

    private BigModelException Refused(byte[] pickle, IEnumerable<(string, byte[])>? storages = null, PyTorchLimits? limits = null) =>
        Assert.Throws<BigModelException>(() => Read(pickle, storages, limits));

    private static PickleBuilder StateDict() => new PickleBuilder().Proto(2).OrderedDict().Mark();

    private static PickleBuilder Tensor(PickleBuilder p, long offset, long[] shape, long[] stride, string key = "0", long numel = 8) =>
        p.TensorV2("FloatStorage", key, numel, offset, shape, stride);

    private static byte[] Bytes(TensorInfo t) => TensorData.ReadAll(t);

    private static byte[] Floats(params float[] v) => TorchArchive.Floats(v);

    [Fact]
    public void Rebuilds_views_with_offsets_and_strides_over_one_storage()
    {
        var p = StateDict();
        p.Str("whole"); Tensor(p, 0, [2, 4], [4, 1]);
        p.Str("t"); Tensor(p, 0, [4, 2], [1, 4]);
        p.Str("tail"); Tensor(p, 5, [3], [1]);
        p.Str("every_other"); Tensor(p, 1, [4], [2]);
        p.Str("broadcast"); Tensor(p, 2, [3, 2], [0, 1]);
        p.Str("scalar"); Tensor(p, 7, [], []);
        p.Str("empty"); Tensor(p, 8, [0, 3], [3, 1]);
        var t = Read(p.SetItems().Stop().ToArray()).ToDictionary(x => x.Name);
        Assert.Equal(EightFloats, Bytes(t["whole"]));
        Assert.Equal(Floats(0, 4, 1, 5, 2, 6, 3, 7), Bytes(t["t"]));
        Assert.Equal(Floats(5, 6, 7), Bytes(t["tail"]));
        Assert.Null(t["tail"].Strides);
        Assert.Equal(Floats(1, 3, 5, 7), Bytes(t["every_other"]));
        Assert.Equal(Floats(2, 3, 2, 3, 2, 3), Bytes(t["broadcast"]));
        Assert.Equal(Floats(7), Bytes(t["scalar"]));
        Assert.Empty(Bytes(t["empty"]));
        Assert.Equal(t["whole"].DataOffset + 20, t["tail"].DataOffset);
    }

    [Fact]
    public void Dimensions_of_size_one_do_not_make_a_tensor_strided()
    {
        var p = StateDict();
        p.Str("row"); Tensor(p, 0, [1, 8], [123, 1]);
        p.Str("col"); Tensor(p, 0, [8, 1], [1, 99]);
        var t = Read(p.SetItems().Stop().ToArray()).ToDictionary(x => x.Name);
        Assert.Null(t["row"].Strides);
        Assert.Null(t["col"].Strides);
    }

    [Theory]
    [InlineData(0, new long[] { 3, 3 }, new long[] { 3, 1 })]
    [InlineData(7, new long[] { 2 }, new long[] { 1 })]
    [InlineData(0, new long[] { 2, 2 }, new long[] { 7, 1 })]
    [InlineData(9, new long[] { 0 }, new long[] { 1 })]
    public void Refuses_views_that_reach_past_their_storage(long offset, long[] shape, long[] stride)
    {
        var p = StateDict().Str("w");
        Tensor(p, offset, shape, stride);
        var e = Refused(p.SetItems().Stop().ToArray());
        Assert.Equal(BigModelErrorCode.PickleStorageOutOfRange, e.Code);
        Assert.Equal("w", e.Tensor);
    }

    [Fact]
    public void Refuses_impossible_tensor_arguments()
    {
        BigModelException With(Func<PickleBuilder, PickleBuilder> tensor) => Refused(tensor(StateDict().Str("w")).SetItems().Stop().ToArray());
        var overflow = With(p => Tensor(p, 0, [1L << 40, 1L << 40], [0, 0]));
        Assert.Equal(BigModelErrorCode.PickleInvalidTensor, overflow.Code);
        Assert.Contains("overflows", overflow.Message);
        Assert.Equal(BigModelErrorCode.PickleInvalidTensor, With(p => Tensor(p, 0, [2, 2], [1])).Code);
        Assert.Equal(BigModelErrorCode.PickleInvalidTensor, With(p => Tensor(p, -1, [2], [1])).Code);
        Assert.Equal(BigModelErrorCode.PickleInvalidTensor, With(p => Tensor(p, 0, [2], [-1])).Code);
        Assert.Equal(BigModelErrorCode.PickleInvalidTensor, With(p => Tensor(p, 0, Enumerable.Repeat(1L, 65).ToArray(), Enumerable.Repeat(1L, 65).ToArray())).Code);
        var notStorage = With(p => p.Global("torch._utils", "_rebuild_tensor_v2").Mark().Str("0").Int(0).Tuple(2).Tuple(1).False().None().TupleFromMark().Reduce());
        Assert.Equal(BigModelErrorCode.PickleInvalidTensor, notStorage.Code);
        Assert.Contains("storage", notStorage.Message);
        var arity = With(p => p.Global("torch._utils", "_rebuild_tensor_v2").Mark().Int(0).TupleFromMark().Reduce());
        Assert.Contains("takes 6 to 7 arguments, got 1", arity.Message);
    }

    [Fact]
    public void Rebuild_tensor_v3_reads_an_untyped_storage_with_the_given_dtype()
    {
        // What torch >= 2.3 writes for the dtypes without legacy storage classes (uint16, float8...).
        var bytes = TorchArchive.Sequence(16, 1);
        var p = StateDict().Str("u16")
            .Global("torch._utils", "_rebuild_tensor_v3").Mark()
            .Storage("UntypedStorage", "0", 16).Int(2).Tuple(3).Tuple(1).False().OrderedDict().Global("torch", "uint16")
            .TupleFromMark().Reduce()
            .Str("f8").Global("torch._utils", "_rebuild_tensor_v3").Mark()
            .Storage("UntypedStorage", "0", 16).Int(0).Tuple(4, 4).Tuple(4, 1).False().OrderedDict().Global("torch", "float8_e4m3fn")
            .TupleFromMark().Reduce();
        var t = Read(p.SetItems().Stop().ToArray(), [("0", bytes)]).ToDictionary(x => x.Name);
        Assert.Equal(DType.U16, t["u16"].DType);
        Assert.Equal(bytes[4..10], Bytes(t["u16"]));
        Assert.Equal(DType.F8_E4M3, t["f8"].DType);
        Assert.Equal(bytes, Bytes(t["f8"]));

        var complex = StateDict().Str("c")
            .Global("torch._utils", "_rebuild_tensor_v3").Mark()
            .Storage("UntypedStorage", "0", 16).Int(0).Tuple(1).Tuple(1).False().OrderedDict().Global("torch", "complex128")
            .TupleFromMark().Reduce().SetItems().Stop().ToArray();
        var e = Refused(complex, [("0", bytes)]);
        Assert.Equal(BigModelErrorCode.PickleUnsupportedTensorType, e.Code);
        Assert.Contains("torch.complex128", e.Message);
    }

    [Fact]
    public void Parameters_and_tensor_subclass_wrappers_yield_their_tensor()
    {
        var p = StateDict();
        p.Str("param").Global("torch._utils", "_rebuild_parameter").Mark();
        Tensor(p, 0, [2], [1]).True().OrderedDict().TupleFromMark().Reduce();
        p.Str("with_state").Global("torch._utils", "_rebuild_parameter_with_state").Mark();
        Tensor(p, 2, [2], [1]).True().OrderedDict().EmptyDict().TupleFromMark().Reduce();
        p.Str("from_type").Global("torch._tensor", "_rebuild_from_type_v2").Mark()
            .Global("torch._utils", "_rebuild_tensor_v2").Global("torch", "Tensor")
            .Mark().Storage("FloatStorage", "0", 8).Int(4).Tuple(2).Tuple(1).False().OrderedDict().TupleFromMark()
            .EmptyDict().TupleFromMark().Reduce();
        p.Str("newobj").Global("torch.nn.parameter", "Parameter").Mark();
        Tensor(p, 6, [2], [1]).True().TupleFromMark().Op(0x81);
        var t = Read(p.SetItems().Stop().ToArray()).ToDictionary(x => x.Name);
        Assert.Equal(Floats(0, 1), Bytes(t["param"]));
        Assert.Equal(Floats(2, 3), Bytes(t["with_state"]));
        Assert.Equal(Floats(4, 5), Bytes(t["from_type"]));
        Assert.Equal(Floats(6, 7), Bytes(t["newobj"]));

        var wrongType = StateDict().Str("x").Global("torch._tensor", "_rebuild_from_type_v2").Mark()
            .Global("torch._utils", "_rebuild_tensor_v2").Global("collections", "OrderedDict").EmptyTuple().EmptyDict()
            .TupleFromMark().Reduce().SetItems().Stop().ToArray();
        Assert.Equal(BigModelErrorCode.PickleInvalidTensor, Refused(wrongType).Code);
    }

    [Fact]
    public void Reads_a_state_dict_written_with_protocol_0_text_opcodes()
    {
        // dict via DICT/SETITEM, strings via STRING and UNICODE, ints via INT and LONG, memo via PUT/GET.
        var pickle = new PickleBuilder()
            .Text("(dp0\nS'first'\np1\n")
            .Text("ctorch._utils\n_rebuild_tensor_v2\np2\n")
            .Text("((S'storage'\np4\nctorch\nFloatStorage\nS'0'\nS'cpu'\nI8\ntQI2\n(L3L\ntp3\n(I1\nt")
            .Text("I00\nccollections\nOrderedDict\n)RtRs")
            .Text("V\\u00e9t\\u00e9\ng2\n((g4\nctorch\nFloatStorage\nS'0'\nV\\u0063pu\nI8\ntQL0\n(I2\nI2\nt(I2\nI1\ntI01\nNtRs.")
            .ToArray();
        var t = Read(pickle);
        Assert.Equal(["first", "été"], t.Select(x => x.Name));
        Assert.Equal(Floats(2, 3, 4), Bytes(t[0]));
        Assert.Equal(Floats(0, 1, 2, 3), Bytes(t[1]));
    }

    [Theory]
    [InlineData("'plain'", "plain")]
    [InlineData("\"dq\"", "dq")]
    [InlineData("'a\\x41\\101\\n\\\\\\''", "aAA\n\\'")]
    [InlineData("'\\q\\7'", "\\q\a")]
    public void Decodes_protocol_0_string_literals(string literal, string expected)
    {
        Assert.True(PickleText.TryDecodeStringLiteral(System.Text.Encoding.ASCII.GetBytes(literal), out var value, out _));
        Assert.Equal(expected, value);
    }

    [Theory]
    [InlineData("'open")]
    [InlineData("'bad\\x4'")]
    [InlineData("x")]
    public void Refuses_broken_string_literals(string literal) =>
        Assert.False(PickleText.TryDecodeStringLiteral(System.Text.Encoding.ASCII.GetBytes(literal), out _, out _));

    [Theory]
    [InlineData("caf\\u00e9", "café")]
    [InlineData("\\U0001F600!", "\U0001F600!")]
    [InlineData("back\\slash", "back\\slash")]
    public void Decodes_protocol_0_raw_unicode_escapes(string text, string expected)
    {
        Assert.True(PickleText.TryDecodeRawUnicodeEscape(System.Text.Encoding.ASCII.GetBytes(text), out var value, out _));
        Assert.Equal(expected, value);
        Assert.False(PickleText.TryDecodeRawUnicodeEscape("\\U00110000"u8, out _, out var error));
        Assert.Contains("beyond Unicode", error);
        Assert.False(PickleText.TryDecodeRawUnicodeEscape("\\u12"u8, out _, out _));
    }

    [Fact]
    public void Reads_protocol_4_framing_memoize_and_short_strings()
    {
        var body = new PickleBuilder()
            .Op(0x8c).Raw(11).Text("collections").Op(0x94)
            .Op(0x8c).Raw(11).Text("OrderedDict").Op(0x94).Op(0x93).Op(0x94).EmptyTuple().Reduce().Op(0x94)
            .Op(0x8c).Raw(1).Text("w").Op(0x94);
        Tensor(body, 0, [8], [1]);
        body.SetItem().Stop();
        var bytes = body.ToArray();
        var frame = new PickleBuilder().Proto(4).Op(0x95).Raw(BitConverter.GetBytes((long)bytes.Length)).Raw(bytes).ToArray();
        Assert.Equal(EightFloats, Bytes(Assert.Single(Read(frame))));
        var badFrame = new PickleBuilder().Proto(4).Op(0x95).Raw(BitConverter.GetBytes(1L << 40)).EmptyDict().Stop().ToArray();
        Assert.Equal(BigModelErrorCode.PickleMalformed, Refused(badFrame).Code);
    }

    [Fact]
    public void Dicts_follow_python_semantics_and_non_tensor_leaves_are_skipped()
    {
        var p = new PickleBuilder().Proto(2).EmptyDict().Mark();
        p.Str("a"); Tensor(p, 0, [1], [1]);
        p.Str("b"); Tensor(p, 1, [1], [1]);
        p.Str("a"); Tensor(p, 2, [1], [1]);          // replaces "a" in place
        p.Int(7); Tensor(p, 3, [1], [1]);            // int keys become names
        p.Int(1); Tensor(p, 4, [1], [1]);
        p.True(); Tensor(p, 5, [1], [1]);            // True == 1 as a key: replaces the value of 1
        p.Mark().Int(1).TupleFromMark(); Tensor(p, 6, [1], [1]); // tuple keys have no name
        p.Str("n").Int(3).Str("s").Str("text").Str("none").None().Str("f").Raw((byte)'G', 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18);
        p.Str("set").Op(0x8f).Mark().Int(1).Int(2).Op(0x90).Str("frozen").Mark().Int(1).Op(0x91);
        p.Str("bytes").Global("_codecs", "encode").Mark().Str("\u00ff\u0001").Str("latin1").TupleFromMark().Reduce();
        p.Str("device").Global("torch", "device").Mark().Str("cuda").Int(0).TupleFromMark().Reduce();
        p.Str("size").Global("torch", "Size").Mark().EmptyList().Mark().Int(2).Int(3).Op((byte)'e').TupleFromMark().Reduce();
        var t = Read(p.SetItems().Stop().ToArray());
        Assert.Equal(["a", "b", "7", "1"], t.Select(x => x.Name));
        Assert.Equal(Floats(2), Bytes(t[0]));
        Assert.Equal(Floats(5), Bytes(t[3]));
    }

    [Fact]
    public void Refuses_a_root_that_is_not_a_state_dict_and_names_that_collide()
    {
        var list = Refused(new PickleBuilder().Proto(2).EmptyList().Stop().ToArray());
        Assert.Equal(BigModelErrorCode.PickleMalformed, list.Code);
        Assert.Contains("not a state dict", list.Message);
        var single = Refused(Tensor(new PickleBuilder().Proto(2), 0, [8], [1]).Stop().ToArray());
        Assert.Contains("a single tensor", single.Message);

        var p = StateDict();
        p.Str("a.b"); Tensor(p, 0, [1], [1]);
        p.Str("a").EmptyDict().Str("b"); Tensor(p, 1, [1], [1]).SetItem();
        var e = Refused(p.SetItems().Stop().ToArray());
        Assert.Equal(BigModelErrorCode.PickleMalformed, e.Code);
        Assert.Equal("a.b", e.Tensor);
    }

    [Fact]
    public void Shared_and_cyclic_containers_are_walked_once()
    {
        // A list that contains itself, and a "billion laughs" of tuples each holding the previous one twice.
        var p = new PickleBuilder().Proto(2).EmptyDict().Put(0)
            .Str("loop").EmptyList().Put(1).Get(1).Append().SetItem()
            .Get(0).Str("laughs");
        Tensor(p, 0, [2], [1]).Put(2).Op((byte)'0');
        for (int level = 0; level < 60; level++) p.Get(2).Get(2).Op(0x86).Put(2).Op((byte)'0');
        p.Get(2).SetItem().Stop();
        var watch = Stopwatch.StartNew();
        var t = Read(p.ToArray());
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10));
        // 2^60 paths lead to the tensor; each container is entered once, so it is named by the first path only,
        // once per slot of the innermost pair.
        var path = "laughs" + string.Concat(Enumerable.Repeat(".0", 59));
        Assert.Equal([path + ".0", path + ".1"], t.Select(x => x.Name));
    }

    [Fact]
    public void Storages_are_resolved_once_per_key_as_torch_does()
    {
        var p = StateDict();
        p.Str("a"); Tensor(p, 0, [8], [1]);
        p.Str("b"); Tensor(p, 0, [8], [1], numel: 999); // the first id decides the storage, as in torch.load
        var t = Read(p.SetItems().Stop().ToArray());
        Assert.Equal(t[0].DataOffset, t[1].DataOffset);

        var unsupported = StateDict().Str("c");
        unsupported.TensorV2("ComplexDoubleStorage", "0", 2, 0, [2], [1]);
        var e = Refused(unsupported.SetItems().Stop().ToArray(), [("0", new byte[32])]);
        Assert.Equal(BigModelErrorCode.PickleUnsupportedTensorType, e.Code);
        Assert.Contains("ComplexDoubleStorage", e.Message);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("tensor_7.bin")]
    [InlineData("A-b")]
    public void Accepts_plain_storage_keys(string key)
    {
        var p = StateDict().Str("w");
        Tensor(p, 0, [8], [1], key);
        Assert.Single(Read(p.SetItems().Stop().ToArray(), [(key, EightFloats)]));
    }

    [Theory]
    [InlineData("..")]
    [InlineData(".")]
    [InlineData("")]
    [InlineData("a/b")]
    [InlineData("C:x")]
    [InlineData("x y")]
    [InlineData("é")]
    public void Refuses_storage_keys_with_path_characters(string key)
    {
        var p = StateDict().Str("w");
        Tensor(p, 0, [8], [1], key);
        var e = Refused(p.SetItems().Stop().ToArray());
        Assert.Equal(BigModelErrorCode.PickleZipEntryUnsafe, e.Code);
    }

    [Fact]
    public void Refuses_state_changes_the_weights_only_rules_forbid()
    {
        var buildTensor = StateDict().Str("w");
        Tensor(buildTensor, 0, [8], [1]).Mark().TupleFromMark().Build();
        Assert.Equal(BigModelErrorCode.PickleMalformed, Refused(buildTensor.SetItems().Stop().ToArray()).Code);

        var bytearrayOfN = new PickleBuilder().Proto(2).Global("builtins", "bytearray").Mark().Int(int.MaxValue).TupleFromMark().Reduce().Stop().ToArray();
        Assert.Equal(BigModelErrorCode.PickleMalformed, Refused(bytearrayOfN).Code);

        var appendToDict = new PickleBuilder().Proto(2).EmptyDict().Int(1).Append().Stop().ToArray();
        Assert.Equal(BigModelErrorCode.PickleMalformed, Refused(appendToDict).Code);

        var setitemOnList = new PickleBuilder().Proto(2).EmptyList().Int(1).Int(2).SetItem().Stop().ToArray();
        Assert.Equal(BigModelErrorCode.PickleMalformed, Refused(setitemOnList).Code);

        var unhashable = new PickleBuilder().Proto(2).EmptyDict().EmptyList().Int(1).SetItem().Stop().ToArray();
        Assert.Equal(BigModelErrorCode.PickleMalformed, Refused(unhashable).Code);

        var newobjFunction = new PickleBuilder().Proto(2).Global("torch._utils", "_rebuild_tensor_v2").EmptyTuple().Op(0x81).Stop().ToArray();
        var e = Refused(newobjFunction);
        Assert.Equal(BigModelErrorCode.PickleForbiddenGlobal, e.Code);
        Assert.Contains("torch._utils._rebuild_tensor_v2", e.Message);

        var textPersid = new PickleBuilder().Proto(0).Text("P0\n.").ToArray();
        Assert.Equal(BigModelErrorCode.PickleMalformed, Refused(textPersid).Code);
    }

    [Fact]
    public void Malformed_streams_fail_with_the_opcode_and_offset()
    {
        var cases = new (byte[] Pickle, string Mention)[]
        {
            (new PickleBuilder().Proto(2).Reduce().Stop().ToArray(), "REDUCE"),
            (new PickleBuilder().Proto(2).Op((byte)'1').Stop().ToArray(), "POP_MARK"),
            (new PickleBuilder().Proto(2).Stop().ToArray(), "STOP"),
            (new PickleBuilder().Proto(2).Get(5).Stop().ToArray(), "memo slot 5"),
            (new PickleBuilder().Proto(2).EmptyDict().ToArray(), "without a STOP"),
            ([], "empty"),
            (new PickleBuilder().Proto(2).EmptyDict().Mark().Int(1).Op((byte)'u').Stop().ToArray(), "odd number"),
            (new PickleBuilder().Proto(2).Mark().Int(1).Op((byte)'u').Stop().ToArray(), "SETITEMS needs a value"),
            (new PickleBuilder().Proto(2).Raw((byte)'X', 0x00, 0x00, 0x01, 0x00).Stop().ToArray(), "truncated"),
            (new PickleBuilder().Proto(2).Raw((byte)'X', 2, 0, 0, 0, 0xc3, 0x28).Stop().ToArray(), "UTF-8"),
            (new PickleBuilder().Proto(2).Raw((byte)'J', 1).ToArray(), "truncated"),
            (new PickleBuilder().Proto(0).Text("Inot a number\n.").ToArray(), "not an integer"),
            (new PickleBuilder().Proto(0).Text("S'unterminated\n.").ToArray(), "quoted"),
            (new PickleBuilder().Proto(0).Text("cos").ToArray(), "end of line"),
            (new PickleBuilder().Proto(2).Raw(0x8b, 0xff, 0xff, 0xff, 0xff).Stop().ToArray(), "negative"),
        };
        foreach (var (pickle, mention) in cases)
        {
            var e = Refused(pickle);
            Assert.True(e.Code == BigModelErrorCode.PickleMalformed, $"{mention}: {e.Code} {e.Message}");
            Assert.True(e.Message.Contains(mention), $"expected '{mention}' in: {e.Message}");
            Assert.Contains("archive/data.pkl byte", e.Message);
            Assert.NotNull(e.Offset);
        }
    }

    [Fact]
    public void Every_limit_is_enforced_without_allocating_what_the_file_claims()
    {
        var deepMarks = new PickleBuilder().Proto(2);
        for (int i = 0; i < 100_000; i++) deepMarks.Mark();
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(deepMarks.Stop().ToArray()).Code);

        var manyValues = new PickleBuilder().Proto(2);
        for (int i = 0; i < 200; i++) manyValues.None();
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(manyValues.Stop().ToArray(), limits: new PyTorchLimits { MaxStackItems = 100 }).Code);

        var memo = new PickleBuilder().Proto(4).None();
        for (int i = 0; i < 200; i++) memo.Op(0x94);
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(memo.Stop().ToArray(), limits: new PyTorchLimits { MaxMemoEntries = 100 }).Code);

        var ops = new PickleBuilder().Proto(2);
        for (int i = 0; i < 200; i++) ops.None().Op((byte)'0');
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(ops.EmptyDict().Stop().ToArray(), limits: new PyTorchLimits { MaxOperations = 100 }).Code);

        // OrderedDict(pairs) over one memoised tuple of 50 pairs, 50 times: 2500 copied items.
        var copies = new PickleBuilder().Proto(2).Mark();
        for (int i = 0; i < 50; i++) copies.Int(i).None().Op(0x86);
        copies.TupleFromMark().Put(0).Op((byte)'0');
        for (int i = 0; i < 50; i++) copies.Global("collections", "OrderedDict").Get(0).Op(0x85).Reduce().Op((byte)'0');
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(copies.EmptyDict().Stop().ToArray(), limits: new PyTorchLimits { MaxCopiedItems = 1000 }).Code);

        // One memoised 1 MB string used as a dict key 20,000 times: each use would hash a megabyte again.
        var reusedKey = new PickleBuilder().Proto(2).EmptyDict().Str(new string('k', 1 << 20)).Put(1).None().SetItem();
        for (int i = 0; i < 20_000; i++) reusedKey.Get(1).None().SetItem();
        var watch = Stopwatch.StartNew();
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(reusedKey.Stop().ToArray()).Code);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"took {watch.Elapsed}");

        var hugeString = new PickleBuilder().Proto(4).Op(0x8d).Raw(BitConverter.GetBytes(long.MaxValue)).Stop().ToArray();
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(hugeString).Code);
        var longString = new PickleBuilder().Proto(2).Str(new string('x', 5000)).Stop().ToArray();
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(longString, limits: new PyTorchLimits { MaxStringBytes = 4096 }).Code);
        var hugeInt = new PickleBuilder().Proto(2).Raw(0x8b).Raw(BitConverter.GetBytes(100_000)).Raw(new byte[100_000]).Stop().ToArray();
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(hugeInt).Code);
        var longDigits = new PickleBuilder().Proto(0).Text("L" + new string('9', 10_000) + "L\n.").ToArray();
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(longDigits).Code);

        var deepDicts = new PickleBuilder().Proto(2);
        for (int i = 0; i < 100; i++) deepDicts.EmptyDict().Str("k");
        Tensor(deepDicts, 0, [1], [1]);
        for (int i = 0; i < 100; i++) deepDicts.SetItem();
        var deep = Refused(deepDicts.Stop().ToArray());
        Assert.Equal(BigModelErrorCode.PickleTooLarge, deep.Code);
        Assert.Contains("nests deeper than 64", deep.Message);

        var many = StateDict();
        for (int i = 0; i < 5; i++) { many.Str($"t{i}"); Tensor(many, 0, [1], [1]); }
        Assert.Equal(BigModelErrorCode.PickleTooLarge, Refused(many.SetItems().Stop().ToArray(), limits: new PyTorchLimits { MaxTensors = 4 }).Code);
    }

    [Fact]
    public void Protocols_above_5_and_unknown_opcodes_are_named()
    {
        var p6 = Refused(new PickleBuilder().Proto(6).EmptyDict().Stop().ToArray());
        Assert.Equal(BigModelErrorCode.PickleUnsupportedProtocol, p6.Code);
        var unknown = Refused(new PickleBuilder().Proto(2).EmptyDict().Raw(0x99).Stop().ToArray());
        Assert.Equal(BigModelErrorCode.PickleInvalidOpcode, unknown.Code);
        Assert.Contains("0x99", unknown.Message);
        Assert.Contains("byte 3", unknown.Message);
    }
}
