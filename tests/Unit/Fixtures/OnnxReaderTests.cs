using System.Text;
using BigModel.Errors;
using BigModel.Fixtures.MiniLm;
using BigModel.Fixtures.Onnx;

namespace BigModel.Tests.Fixtures;

public sealed class OnnxReaderTests
{
    /// <summary>Protocol-buffers encoding, written out by hand so the tests do not share the reader's code.</summary>
    private static class Pb
    {
        public static byte[] Varint(ulong v)
        {
            var bytes = new List<byte>();
            do
            {
                byte b = (byte)(v & 0x7F);
                v >>= 7;
                if (v != 0) b |= 0x80;
                bytes.Add(b);
            } while (v != 0);
            return [.. bytes];
        }

        public static byte[] Key(int field, int wire) => Varint((ulong)(field << 3 | wire));
        public static byte[] Int(int field, long v) => [.. Key(field, 0), .. Varint(unchecked((ulong)v))];
        public static byte[] Bytes(int field, byte[] v) => [.. Key(field, 2), .. Varint((ulong)v.Length), .. v];
        public static byte[] Str(int field, string v) => Bytes(field, Encoding.UTF8.GetBytes(v));
        public static byte[] Msg(int field, params byte[][] parts) => Bytes(field, parts.SelectMany(p => p).ToArray());
        public static byte[] Fixed32(int field, float v) => [.. Key(field, 5), .. BitConverter.GetBytes(v)];

        public static byte[] Tensor(int field, string name, long[] dims, float[] values, bool raw = true) => Msg(field,
            [.. dims.SelectMany(d => Int(1, d)).ToArray()],
            Int(2, 1),
            Str(8, name),
            raw ? Bytes(9, values.SelectMany(BitConverter.GetBytes).ToArray()) : Bytes(4, values.SelectMany(BitConverter.GetBytes).ToArray()));

        public static byte[] Node(string op, string[] inputs, string[] outputs, params byte[][] attributes) => Msg(1,
            [.. inputs.SelectMany(i => Str(1, i)).ToArray()],
            [.. outputs.SelectMany(o => Str(2, o)).ToArray()],
            Str(3, op + "_0"),
            Str(4, op),
            [.. attributes.SelectMany(a => a).ToArray()]);

        public static byte[] IntAttribute(string name, long v) => Msg(5, Str(1, name), Int(3, v), Int(20, 2));
    }

    /// <summary>A one-layer BERT-shaped graph: MatMul + Add for the Linear layers, Gemm for the pooler.</summary>
    private static byte[] TinyBert(bool poolerTransB = true)
    {
        const int h = 4, inter = 6;
        float[] Seq(int n, float start) => Enumerable.Range(0, n).Select(i => start + i).ToArray();
        var graph = new List<byte[]>
        {
            Pb.Tensor(5, "embeddings.word_embeddings.weight", [10, h], Seq(10 * h, 0)),
            Pb.Tensor(5, "embeddings.position_embeddings.weight", [8, h], Seq(8 * h, 100)),
            Pb.Tensor(5, "embeddings.token_type_embeddings.weight", [2, h], Seq(2 * h, 200)),
            Pb.Tensor(5, "embeddings.LayerNorm.weight", [h], Seq(h, 1), raw: false),
            Pb.Tensor(5, "embeddings.LayerNorm.bias", [h], Seq(h, 2)),
            Pb.Node("Constant", [], ["eps"], Pb.Msg(5, Pb.Str(1, "value"), Pb.Tensor(5, "", [], [1e-12f]))),
            Pb.Node("Add", ["var", "eps"], ["var_eps"]),
            Pb.Node("Sqrt", ["var_eps"], ["std"]),
            Pb.Node("Constant", [], ["scale"], Pb.Msg(5, Pb.Str(1, "value"), Pb.Tensor(5, "", [], [MathF.Sqrt(2)]))),
            Pb.Node("MatMul", ["q", "kT"], ["scores"]),
            Pb.Node("Div", ["scores", "scale"], ["scaled"]),
            Pb.Node("Erf", ["a"], ["b"]),
        };
        string l = "encoder.layer.0.";
        (string Module, int In, int Out)[] linears =
        [
            ("attention.self.query", h, h), ("attention.self.key", h, h), ("attention.self.value", h, h),
            ("attention.output.dense", h, h), ("intermediate.dense", h, inter), ("output.dense", inter, h),
        ];
        int k = 0;
        foreach (var (module, inDim, outDim) in linears)
        {
            var w = $"{900 + k++}";
            graph.Add(Pb.Tensor(5, w, [inDim, outDim], Seq(inDim * outDim, 1000 * k)));
            graph.Add(Pb.Tensor(5, l + module + ".bias", [outDim], Seq(outDim, -k)));
            graph.Add(Pb.Node("MatMul", ["x" + k, w], ["mm" + k]));
            graph.Add(Pb.Node("Add", [l + module + ".bias", "mm" + k], ["y" + k]));
        }
        foreach (var ln in new[] { "attention.output.LayerNorm", "output.LayerNorm" })
        {
            graph.Add(Pb.Tensor(5, l + ln + ".weight", [h], Seq(h, 1)));
            graph.Add(Pb.Tensor(5, l + ln + ".bias", [h], Seq(h, 0)));
        }
        graph.Add(Pb.Tensor(5, "pooler.dense.weight", [h, h], Seq(h * h, 5000)));
        graph.Add(Pb.Tensor(5, "pooler.dense.bias", [h], Seq(h, 0)));
        graph.Add(Pb.Node("Gemm", ["cls", "pooler.dense.weight", "pooler.dense.bias"], ["pooled"], Pb.IntAttribute("transB", poolerTransB ? 1 : 0)));
        return [.. Pb.Int(1, 7), .. Pb.Str(2, "pytorch"), .. Pb.Msg(7, [.. graph, Pb.Str(2, "g")])];
    }

    [Fact]
    public void Converter_names_and_transposes_linear_weights_from_the_graph_wiring()
    {
        var model = OnnxModel.Parse(TinyBert());
        Assert.Equal(7, model.IrVersion);
        Assert.Equal("pytorch", model.Producer);
        var (tensors, dims) = BertOnnxConverter.Convert(model);
        var byName = tensors.ToDictionary(t => t.Name);

        var inter = byName["encoder.layer.0.intermediate.dense.weight"];
        Assert.True(inter.Transposed);
        Assert.Equal([6L, 4], inter.Shape);
        var bytes = new byte[inter.ByteLength];
        inter.CopyTo(bytes);
        var values = new float[24];
        Buffer.BlockCopy(bytes, 0, values, 0, 24 * 4);
        // Source [4, 6] row-major is 5000 + i; element (out o, in i) of the result is source (i, o).
        for (int o = 0; o < 6; o++)
            for (int i = 0; i < 4; i++)
                Assert.Equal(5000 + i * 6 + o, values[o * 4 + i]);

        Assert.False(byName["pooler.dense.weight"].Transposed);
        Assert.False(byName["embeddings.LayerNorm.weight"].Transposed);
        Assert.Equal([1f, 2, 3, 4], byName["embeddings.LayerNorm.weight"].Source.Floats.ToArray());
        Assert.Equal(new BertDimensions(10, 4, 1, 2, 6, 8, 2, 1e-12, "gelu", true), dims);
    }

    [Fact]
    public void Gemm_without_transB_is_transposed()
    {
        var (tensors, _) = BertOnnxConverter.Convert(OnnxModel.Parse(TinyBert(poolerTransB: false)));
        Assert.True(tensors.Single(t => t.Name == "pooler.dense.weight").Transposed);
    }

    [Fact]
    public void Truncated_models_fail_with_typed_errors_only()
    {
        var bytes = TinyBert();
        for (int cut = 1; cut < bytes.Length; cut += 7)
        {
            try
            {
                var model = OnnxModel.Parse(bytes.AsMemory(0, cut));
                BertOnnxConverter.Convert(model);
            }
            catch (BigModelException e)
            {
                Assert.Equal(BigModelErrorCode.UnsupportedFormat, e.Code);
            }
        }
    }

    [Fact]
    public void Corrupted_models_fail_with_typed_errors_only()
    {
        var original = TinyBert();
        var random = new Random(42);
        for (int trial = 0; trial < 5000; trial++)
        {
            var bytes = (byte[])original.Clone();
            for (int flips = random.Next(1, 4); flips > 0; flips--) bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
            try
            {
                BertOnnxConverter.Convert(OnnxModel.Parse(bytes));
            }
            catch (BigModelException)
            {
            }
        }
    }

    [Theory]
    [InlineData(new byte[] { 0x3A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F }, "runs past the end")] // graph of 4 GB in 6 bytes
    [InlineData(new byte[] { 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 }, "varint")]
    [InlineData(new byte[] { 0x0B }, "wire type 3")] // groups are not part of ONNX
    [InlineData(new byte[] { 0x00 }, "field number 0")]
    [InlineData(new byte[] { 0x08, 0x07 }, "no ONNX graph")]
    public void Malformed_protobuf_is_reported_with_its_offset(byte[] bytes, string message)
    {
        var e = Assert.Throws<BigModelException>(() => OnnxModel.Parse(bytes, "m.onnx"));
        Assert.Equal(BigModelErrorCode.UnsupportedFormat, e.Code);
        Assert.Contains(message, e.Message);
        Assert.Equal("m.onnx", e.File);
    }

    [Fact]
    public void Tensor_data_that_disagrees_with_its_dims_is_refused()
    {
        var bad = Pb.Msg(7, Pb.Msg(5, Pb.Int(1, 3), Pb.Int(2, 1), Pb.Str(8, "w"), Pb.Bytes(9, new byte[8])));
        var e = Assert.Throws<BigModelException>(() => OnnxModel.Parse(bad));
        Assert.Equal("w", e.Tensor);
    }

    [Fact]
    public void External_data_is_refused()
    {
        var external = Pb.Msg(7, Pb.Msg(5, Pb.Int(1, 3), Pb.Int(2, 1), Pb.Str(8, "w"), Pb.Int(14, 1)));
        Assert.Contains("external", Assert.Throws<BigModelException>(() => OnnxModel.Parse(external)).Message);
    }

    [Theory]
    [InlineData(new long[] { 1L << 20, 1L << 20, int.MaxValue })]
    [InlineData(new long[] { int.MaxValue, int.MaxValue, int.MaxValue })]
    public void Dimensions_whose_product_would_wrap_are_refused(long[] dims)
    {
        var huge = Pb.Msg(7, Pb.Msg(5, [.. dims.SelectMany(d => Pb.Int(1, d)).ToArray()], Pb.Int(2, 1), Pb.Str(8, "w")));
        var e = Assert.Throws<BigModelException>(() => OnnxModel.Parse(huge));
        Assert.Contains("implausibly large", e.Message);
        Assert.Equal("w", e.Tensor);
    }
}
