using System.Runtime.InteropServices;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Fixtures.MiniLm;
using BigModel.Fixtures.Onnx;
using BigModel.Tests.Support;
using Tokenizers.DotNet;

namespace BigModel.Tests.Fixtures;

public sealed class MiniLmFixtureTests
{
    private static string Folder => TestFixtures.MiniLm;

    [Fact]
    public void Converted_folder_opens_as_a_bert_model_whose_config_comes_from_the_graph()
    {
        var checkpoint = Checkpoint.Open(Folder);
        Assert.Equal(CheckpointFormat.Safetensors, checkpoint.Format);
        Assert.Same(ArchitectureCatalog.Bert, checkpoint.Architecture);
        Assert.Equal([DType.F32], checkpoint.DTypes);
        Assert.Equal("pt", checkpoint.Metadata["format"]);
        Assert.Equal(22_713_216, checkpoint.ParameterCount);

        var config = checkpoint.Config!;
        Assert.Equal("bert", config.ModelType);
        Assert.Equal("BertModel", config.Architecture);
        Assert.Equal(384, config.HiddenSize);
        Assert.Equal(6, config.NumHiddenLayers);
        Assert.Equal(12, config.NumAttentionHeads);
        Assert.Equal(1536, config.IntermediateSize);
        Assert.Equal(30522, config.VocabSize);
        Assert.Equal(512, config.MaxPositionEmbeddings);
        Assert.Equal(2, config.TypeVocabSize);
        Assert.Equal(1e-12, config.LayerNormEps);
        Assert.Equal("gelu", config.HiddenAct);
        Assert.Equal(DType.F32, config.TorchDType);

        // Exactly the tensors a transformers BertModel save holds, pooler included.
        var expected = ArchitectureCatalog.Bert.TensorsFromConfig(config).ToDictionary(t => t.Name, t => t.Shape);
        Assert.Equal(expected.Keys.Order(), checkpoint.Tensors.Select(t => t.Name).Order());
        foreach (var t in checkpoint.Tensors) Assert.Equal(expected[t.Name], t.Shape);
        Assert.NotNull(checkpoint.Find("pooler.dense.weight"));
    }

    [Fact]
    public void Checkpoint_tensors_rebuilt_in_onnx_order_equal_the_onnx_initializers()
    {
        var checkpoint = Checkpoint.Open(Folder);
        var onnx = OnnxModel.Load(Path.Combine(Folder, "onnx", "model.onnx"));

        // The exporter names the parameters it keeps as they are, and numbers the Linear weights it transposes,
        // in the order the modules run: query, key, value, attention output, intermediate, output per layer.
        string[] linearOrder = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"];
        int layers = checkpoint.Config!.NumHiddenLayers!.Value;
        var numbered = new Queue<string>(Enumerable.Range(0, layers).SelectMany(l => linearOrder.Select(m => $"encoder.layer.{l}.{m}.weight")));

        var used = new HashSet<string>();
        foreach (var init in onnx.Initializers.Where(i => i.DataType == OnnxDataType.Float && i.ElementCount > 1))
        {
            var onnxValues = init.Floats.ToArray();
            if (init.Name.EndsWith(".weight") || init.Name.EndsWith(".bias"))
            {
                var tensor = checkpoint[init.Name];
                Assert.Equal(init.Dims, tensor.Shape);
                Assert.Equal(onnxValues, ReadFloats(tensor));
                used.Add(init.Name);
                continue;
            }
            Assert.Equal(2, init.Dims.Count);
            var name = numbered.Dequeue();
            var hf = checkpoint[name];
            // nn.Linear stores [out, in]; the graph multiplies by its transpose.
            Assert.Equal(new[] { init.Dims[1], init.Dims[0] }, hf.Shape);
            var back = Transpose(ReadFloats(hf), (int)hf.Shape[0], (int)hf.Shape[1]);
            Assert.Equal(onnxValues, back);
            used.Add(name);
        }
        Assert.Empty(numbered);
        Assert.Equal(checkpoint.Tensors.Count, used.Count);
    }

    [Fact]
    public void Transposed_weights_compute_what_the_graph_computes()
    {
        // One row of the first query projection by hand: x·W_onnx + b must equal W_hf·x + b.
        var checkpoint = Checkpoint.Open(Folder);
        var onnx = OnnxModel.Load(Path.Combine(Folder, "onnx", "model.onnx"));
        var matmul = onnx.Nodes.First(n => n.OpType == "MatMul" && onnx.Initializer(n.Inputs[1]) is { Dims.Count: 2 });
        var w = onnx.Initializer(matmul.Inputs[1])!;
        int inDim = (int)w.Dims[0], outDim = (int)w.Dims[1];
        var x = Enumerable.Range(0, inDim).Select(i => MathF.Sin(i * 0.37f)).ToArray();
        var viaOnnx = new float[outDim];
        var wo = w.Floats;
        for (int i = 0; i < inDim; i++)
            for (int o = 0; o < outDim; o++)
                viaOnnx[o] += x[i] * wo[i * outDim + o];
        var hf = ReadFloats(checkpoint["encoder.layer.0.attention.self.query.weight"]);
        for (int o = 0; o < outDim; o++)
        {
            float sum = 0;
            for (int i = 0; i < inDim; i++) sum += hf[o * inDim + i] * x[i];
            Assert.Equal(viaOnnx[o], sum, 1e-4f);
        }
    }

    public static TheoryData<string> Sentences => new()
    {
        "The quick brown fox jumps over the lazy dog.",
        "Café déjà vu: a naïve résumé, São Paulo, Ångström, Éléphant!",
        "Hello, world!!! (it's 3:45pm) -- e-mail me at test@example.com; #hashtag & 50% off...",
        "Supercalifragilisticexpialidocious antidisestablishmentarianism photosynthesis",
        "unknown symbols ☃ 🤖 ⌘ stay unknown",
        "中文字符 mixed with English and ÜNÏCÖDÉ CAPITALS",
        "tabs\tand\nnewlines  and   spaces",
        new string('x', 120) + " too long for one word",
    };

    [Theory]
    [MemberData(nameof(Sentences))]
    public void Tokenizers_dotnet_reads_the_tokenizer_json_and_agrees_with_an_independent_wordpiece(string text)
    {
        var reference = new ReferenceWordPiece(Path.Combine(Folder, "vocab.txt"));
        using var tokenizer = new Tokenizer(Path.Combine(Folder, "tokenizer.json"));
        var ids = tokenizer.Encode(text).Select(i => (int)i).ToArray();
        Assert.Equal(reference.Encode(text), ids);
    }

    [Fact]
    public void Known_sentence_has_the_published_bert_uncased_ids()
    {
        using var tokenizer = new Tokenizer(Path.Combine(Folder, "tokenizer.json"));
        // bert-base-uncased ids of "The quick brown fox jumps over the lazy dog."
        Assert.Equal([101u, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102], tokenizer.Encode("The quick brown fox jumps over the lazy dog."));
        var reference = new ReferenceWordPiece(Path.Combine(Folder, "vocab.txt"));
        Assert.Contains(reference.Id("[UNK]"), reference.Encode("☃"));
    }

    [Fact]
    public void Long_inputs_are_truncated_to_the_position_table()
    {
        using var tokenizer = new Tokenizer(Path.Combine(Folder, "tokenizer.json"));
        var ids = tokenizer.Encode(string.Join(" ", Enumerable.Repeat("word", 600)));
        Assert.Equal(512, ids.Length);
        Assert.Equal(101u, ids[0]);
        Assert.Equal(102u, ids[^1]);
    }

    [Fact]
    public void A_complete_folder_is_reused_and_force_rebuilds_it()
    {
        using var dir = new TempDirectory();
        var target = dir.Combine("minilm");
        var first = MiniLmFixture.Generate(target);
        Assert.False(first.Reused);
        var before = File.GetLastWriteTimeUtc(Path.Combine(target, "model.safetensors"));
        Assert.True(MiniLmFixture.Generate(target).Reused);
        var again = MiniLmFixture.Generate(target, force: true);
        Assert.False(again.Reused);
        Assert.True(File.GetLastWriteTimeUtc(Path.Combine(target, "model.safetensors")) >= before);
        Assert.Equal(File.ReadAllBytes(Path.Combine(Folder, "model.safetensors")), File.ReadAllBytes(Path.Combine(target, "model.safetensors")));
        // Nothing of the temporary folders is left behind.
        Assert.Equal(["minilm"], Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName));
    }

    private static float[] ReadFloats(TensorInfo tensor) => MemoryMarshal.Cast<byte, float>(TensorData.ReadAll(tensor)).ToArray();

    private static float[] Transpose(float[] values, int rows, int cols)
    {
        var result = new float[values.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                result[c * rows + r] = values[r * cols + c];
        return result;
    }
}
