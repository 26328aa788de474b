using System.Text.Json;
using System.Text.Json.Nodes;
using BigModel.Errors;
using BigModel.Inference;
using BigModel.Tests.Inference.Support;
using BigModel.Tests.Support;

namespace BigModel.Tests.Inference;

/// <summary>A generated BERT (random weights) against the numpy reference, under resident, half-disk and all-disk placements.</summary>
[Collection(TorchCollection.Name)]
public sealed class BertTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private static readonly InferenceOptions Base = new() { Threads = 1 };

    public void Dispose() => _dir.Dispose();

    private static readonly string[] Words = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "in", "park", "##s", "quick", "brown", "fox"];

    private static IEnumerable<Dictionary<string, string>?> Placements()
    {
        yield return null;
        yield return new() { ["embeddings"] = "cpu", ["encoder.layer.0"] = "cpu", ["encoder.layer.1"] = "disk", ["encoder.layer.2"] = "disk" };
        yield return new() { [""] = "disk" };
    }

    private string Model(int seed = 11)
    {
        var folder = RandomCheckpoints.WriteBert(_dir.Combine("bert" + seed), new BertShape(), seed);
        TestTokenizers.WriteWordPiece(Path.Combine(folder, "tokenizer.json"), Words);
        return folder;
    }

    [InferenceFact(Needs.PythonNumpy)]
    public void Embeddings_of_a_padded_batch_match_the_reference_under_every_placement()
    {
        var folder = Model();
        int[][] batch = [[2, 4, 5, 6, 7, 8, 3], [2, 9, 10, 3], [2, 3], [2, 15, 16, 17, 11, 12, 13, 14, 4, 3]];
        var reference = PythonReference.RunJson("bert_reference.py", folder, "--batch", JsonSerializer.Serialize(batch));
        var expected = PythonReference.Matrix(reference["embeddings"]!);
        foreach (var placement in Placements())
            foreach (var batchSize in new[] { 1, 3 })
            {
                using var session = InferenceSession.Open(folder, placement, Base);
                Assert.Equal(InferenceTask.Embeddings, session.Task);
                var result = session.Embed(batch.Select(b => (IReadOnlyList<int>)b).ToList(), new EmbeddingOptions { BatchSize = batchSize, Normalize = false });
                Assert.False(result.Normalized);
                Assert.Equal(32, result.Dimensions);
                LogitAssert.Close(expected, result.Vectors, 1e-4);
            }
    }

    [InferenceFact(Needs.PythonNumpy)]
    public void Text_is_tokenized_with_the_tokenizer_json_and_normalised_on_request()
    {
        var folder = Model(12);
        using var session = InferenceSession.Open(folder, new Dictionary<string, string> { [""] = "disk" }, Base);
        var texts = new[] { "The cat sat on the mat", "A dog ran in the parks", "quick brown fox" };
        var ids = texts.Select(t => session.Tokenizer!.Encode(t)).ToArray();
        Assert.Equal([2, 4, 5, 6, 7, 4, 8, 3], ids[0]);
        Assert.Equal([2, 9, 10, 11, 12, 4, 13, 14, 3], ids[1]);
        var reference = PythonReference.RunJson("bert_reference.py", folder, "--batch", JsonSerializer.Serialize(ids), "--normalize");
        var result = session.Embed(texts, new EmbeddingOptions { Normalize = true });
        Assert.Equal(texts, result.Texts);
        Assert.Equal([8, 9, 5], result.TokenCounts);
        LogitAssert.Close(PythonReference.Matrix(reference["embeddings"]!), result.Vectors, 1e-4);
        Assert.All(result.Vectors, v => Assert.Equal(1.0, Math.Sqrt(v.Sum(x => (double)x * x)), 5));
    }

    [Fact]
    public void Sentence_transformers_files_decide_normalisation_pooling_and_truncation()
    {
        var folder = Model(13);
        File.WriteAllText(Path.Combine(folder, "modules.json"), new JsonArray(
            new JsonObject { ["idx"] = 0, ["name"] = "0", ["path"] = "", ["type"] = "sentence_transformers.models.Transformer" },
            new JsonObject { ["idx"] = 1, ["name"] = "1", ["path"] = "1_Pooling", ["type"] = "sentence_transformers.models.Pooling" },
            new JsonObject { ["idx"] = 2, ["name"] = "2", ["path"] = "2_Normalize", ["type"] = "sentence_transformers.models.Normalize" }).ToJsonString());
        Directory.CreateDirectory(Path.Combine(folder, "1_Pooling"));
        File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), """{"word_embedding_dimension": 32, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}""");
        File.WriteAllText(Path.Combine(folder, "sentence_bert_config.json"), """{"max_seq_length": 5, "do_lower_case": false}""");
        using var session = InferenceSession.Open(folder, null, Base);
        var result = session.Embed(["the cat sat on the mat"]);
        Assert.True(result.Normalized);
        Assert.Equal(EmbeddingPooling.Cls, result.Pooling);
        Assert.Equal([5], result.TokenCounts);
        // Truncation keeps the closing [SEP]: [CLS] the cat sat [SEP].
        var same = session.Embed([(IReadOnlyList<int>)[2, 4, 5, 6, 3]]);
        Assert.Equal(same.Vectors[0], result.Vectors[0]);
        var mean = session.Embed(["the cat sat on the mat"], new EmbeddingOptions { Pooling = EmbeddingPooling.Mean, Normalize = false });
        Assert.False(mean.Normalized);
        Assert.NotEqual(result.Vectors[0], mean.Vectors[0]);
    }

    [Fact]
    public void Generating_with_an_encoder_is_refused()
    {
        using var session = InferenceSession.Open(Model(14), null, Base);
        var e = Assert.Throws<BigModelException>(() => session.Generate([2, 3]));
        Assert.Equal(BigModelErrorCode.ModelKindMismatch, e.Code);
        var ids = Assert.Throws<BigModelException>(() => session.Embed([(IReadOnlyList<int>)[2, 999]]));
        Assert.Equal(BigModelErrorCode.InvalidGenerationInput, ids.Code);
    }

    [Fact]
    public void Cosine_similarity_is_one_for_equal_directions_and_zero_for_orthogonal_ones()
    {
        Assert.Equal(1.0, EmbeddingResult.CosineSimilarity([1f, 2f, 3f], [2f, 4f, 6f]), 12);
        Assert.Equal(0.0, EmbeddingResult.CosineSimilarity([1f, 0f], [0f, 5f]), 12);
        Assert.Equal(-1.0, EmbeddingResult.CosineSimilarity([1f, 1f], [-1f, -1f]), 12);
    }
}
