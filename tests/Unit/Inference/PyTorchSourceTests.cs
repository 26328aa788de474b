using BigModel.Checkpoints;
using BigModel.Inference;
using BigModel.Tests.Inference.Support;
using BigModel.Tests.Support;

namespace BigModel.Tests.Inference;

/// <summary>PyTorch archives (pytorch_model.bin) as sources: disk-placed weights go through a safetensors offload folder.</summary>
[Collection(TorchCollection.Name)]
public sealed class PyTorchSourceTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private static readonly InferenceOptions Base = new() { Threads = 1 };

    public void Dispose() => _dir.Dispose();

    public sealed class TorchFactAttribute : FactAttribute
    {
        public TorchFactAttribute()
        {
            if (PythonReference.Python is null) Skip = "python3 with torch is needed to write the PyTorch archive: " + PythonReference.Unavailable;
        }
    }

    [TorchFact]
    public void A_bin_checkpoint_with_strided_and_shared_storage_generates_what_its_safetensors_twin_does()
    {
        var source = RandomCheckpoints.WriteLlama(_dir.Combine("st"), new LlamaShape { Heads = 4, KvHeads = 4 }, 41);
        var bin = _dir.Combine("bin");
        PythonReference.Run("safetensors_to_bin.py", source, bin, "--views");
        var checkpoint = Checkpoint.Open(bin);
        Assert.Equal(CheckpointFormat.PyTorch, checkpoint.Format);
        Assert.Contains(checkpoint.Tensors, t => !t.IsContiguous);

        var generation = new GenerationOptions { MaxNewTokens = 8, StopTokenIds = [] };
        IReadOnlyList<int> expected;
        using (var s = InferenceSession.Open(source, null, Base)) expected = s.Generate([1, 2, 3], generation).GeneratedIds;

        var offload = _dir.Combine("offload");
        var half = new Dictionary<string, string> { [""] = "cpu", ["model.layers.1"] = "disk", ["model.layers.2"] = "disk", ["lm_head"] = "disk" };
        using (var s = InferenceSession.Open(bin, half, Base with { OffloadFolder = offload }))
        {
            Assert.NotNull(s.LoadReport.OffloadFile);
            Assert.StartsWith(offload, s.LoadReport.OffloadFile);
            var converted = Checkpoint.Open(s.LoadReport.OffloadFile!);
            Assert.Equal(Checkpoint.Open(source).Tensors.Where(t => t.Name.StartsWith("model.layers.1.", StringComparison.Ordinal)
                || t.Name.StartsWith("model.layers.2.", StringComparison.Ordinal) || t.Name == "lm_head.weight").Select(t => t.Name).Order(),
                converted.Tensors.Select(t => t.Name).Order());
            Assert.True(s.LoadReport.MappedBytes > 0);
            Assert.Equal(expected, s.Generate([1, 2, 3], generation).GeneratedIds);
        }
        using (var s = InferenceSession.Open(bin, null, Base))
        {
            Assert.Null(s.LoadReport.OffloadFile);
            Assert.Equal(expected, s.Generate([1, 2, 3], generation).GeneratedIds);
        }
        // The conversion is reused while the archive is unchanged.
        var files = Directory.GetFiles(offload);
        using (var s = InferenceSession.Open(bin, half, Base with { OffloadFolder = offload }))
            Assert.Equal(expected, s.Generate([1, 2, 3], generation).GeneratedIds);
        Assert.Equal(files, Directory.GetFiles(offload));
    }
}
