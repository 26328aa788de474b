using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.IO;
using BigModel.Tests.Support;

namespace BigModel.Tests.Checkpoints;

public sealed class CheckpointTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static readonly (string, DType, long[])[] Layer0 =
    [
        ("model.layers.0.mlp.up_proj.weight", DType.F32, [4, 2]),
        ("model.layers.0.input_layernorm.weight", DType.F32, [2]),
    ];

    private static readonly (string, DType, long[])[] Rest =
    [
        ("model.layers.10.input_layernorm.weight", DType.F32, [2]),
        ("model.layers.2.input_layernorm.weight", DType.F32, [2]),
        ("lm_head.weight", DType.F16, [3, 2]),
        ("model.embed_tokens.weight", DType.F16, [3, 2]),
        ("model.norm.weight", DType.F32, [2]),
    ];

    [Fact]
    public void Resolves_a_folder_the_way_transformers_does()
    {
        var folder = _dir.Combine("m");
        CheckpointBuilder.Safetensors(Path.Combine(folder, "model.safetensors"), Layer0.Concat(Rest));
        var checkpoint = Checkpoint.Open(folder);
        Assert.Equal(CheckpointFormat.Safetensors, checkpoint.Format);
        Assert.Equal(Path.Combine(folder, "model.safetensors"), Assert.Single(checkpoint.Files));
        Assert.Equal(7, checkpoint.Tensors.Count);
    }

    [Fact]
    public void Orders_tensors_in_forward_order_for_a_known_family()
    {
        var folder = _dir.Combine("m");
        CheckpointBuilder.Safetensors(Path.Combine(folder, "model.safetensors"), Layer0.Concat(Rest));
        CheckpointBuilder.Config(folder, """{"model_type":"llama","architectures":["LlamaForCausalLM"]}""");
        var names = Checkpoint.Open(folder).Tensors.Select(t => t.Name).ToList();
        Assert.Equal(
        [
            "model.embed_tokens.weight",
            "model.layers.0.input_layernorm.weight", "model.layers.0.mlp.up_proj.weight",
            "model.layers.2.input_layernorm.weight", "model.layers.10.input_layernorm.weight",
            "model.norm.weight", "lm_head.weight",
        ], names);
    }

    [Fact]
    public void Reads_a_sharded_checkpoint_through_its_index()
    {
        var folder = CheckpointBuilder.Sharded(_dir.Combine("s"), [Layer0, Rest]);
        var checkpoint = Checkpoint.Open(folder);
        Assert.Equal(CheckpointFormat.ShardedSafetensors, checkpoint.Format);
        Assert.Equal(2, checkpoint.Files.Count);
        Assert.Equal(7, checkpoint.Tensors.Count);
        Assert.Empty(checkpoint.Warnings);
        Assert.Equal(checkpoint.ByteLength, checkpoint.DeclaredTotalSize);
        Assert.EndsWith("model-00001-of-00002.safetensors", checkpoint["model.layers.0.mlp.up_proj.weight"].File);
        Assert.Equal(new[] { DType.F16, DType.F32 }, checkpoint.DTypes);
    }

    [Fact]
    public void Opening_the_index_file_directly_gives_the_same_checkpoint()
    {
        var folder = CheckpointBuilder.Sharded(_dir.Combine("s"), [Layer0, Rest]);
        var checkpoint = Checkpoint.Open(Path.Combine(folder, "model.safetensors.index.json"));
        Assert.Equal(7, checkpoint.Tensors.Count);
    }

    [Theory]
    [InlineData("../outside.safetensors")]
    [InlineData("/etc/passwd")]
    [InlineData("sub/../../x.safetensors")]
    [InlineData("C:\\weights.safetensors")]
    [InlineData("..\\x.safetensors")]
    public void Rejects_an_index_whose_shard_path_escapes_the_folder(string shard)
    {
        var folder = _dir.Combine("h");
        Directory.CreateDirectory(folder);
        CheckpointBuilder.Index(folder, new Dictionary<string, string> { ["w"] = shard }, null);
        var e = Assert.Throws<BigModelException>(() => Checkpoint.Open(folder));
        Assert.Equal(BigModelErrorCode.IndexPathEscapes, e.Code);
        Assert.Contains("model.safetensors.index.json", e.Message);
    }

    [Fact]
    public void Rejects_a_shard_that_is_a_symlink_out_of_the_folder()
    {
        var outside = CheckpointBuilder.Safetensors(_dir.Combine("outside", "x.safetensors"), [("w", DType.F32, [1])]);
        var folder = _dir.Combine("h");
        Directory.CreateDirectory(folder);
        File.CreateSymbolicLink(Path.Combine(folder, "model-00001-of-00001.safetensors"), outside);
        CheckpointBuilder.Index(folder, new Dictionary<string, string> { ["w"] = "model-00001-of-00001.safetensors" }, 4);
        Assert.Equal(BigModelErrorCode.IndexPathEscapes, Assert.Throws<BigModelException>(() => Checkpoint.Open(folder)).Code);
    }

    [Fact]
    public void Rejects_a_shard_link_whose_dot_dot_climbs_out_through_another_link()
    {
        // root/s -> elsewhere/deep/y; root/a.safetensors -> s/../b, which the system resolves to elsewhere/deep/b.
        var deep = _dir.Combine("elsewhere", "deep");
        Directory.CreateDirectory(Path.Combine(deep, "y"));
        CheckpointBuilder.Safetensors(Path.Combine(deep, "b"), [("w", DType.F32, [1])]);
        var folder = _dir.Combine("h");
        Directory.CreateDirectory(folder);
        CheckpointBuilder.Safetensors(Path.Combine(folder, "b"), [("w", DType.F32, [1])]);
        Directory.CreateSymbolicLink(Path.Combine(folder, "s"), Path.Combine(deep, "y"));
        File.CreateSymbolicLink(Path.Combine(folder, "a.safetensors"), "s/../b");
        CheckpointBuilder.Index(folder, new Dictionary<string, string> { ["w"] = "a.safetensors" }, 4);
        var e = Assert.Throws<BigModelException>(() => Checkpoint.Open(folder));
        Assert.Equal(BigModelErrorCode.IndexPathEscapes, e.Code);
        Assert.Contains(Path.Combine(deep, "b"), e.Message);
        Assert.Equal(Path.Combine(deep, "b"), PathSafety.RealPath(Path.Combine(folder, "a.safetensors")));
    }

    [Fact]
    public void Accepts_a_shard_link_whose_dot_dot_stays_inside_and_refuses_a_link_loop()
    {
        var folder = _dir.Combine("h");
        Directory.CreateDirectory(Path.Combine(folder, "sub"));
        CheckpointBuilder.Safetensors(Path.Combine(folder, "real.safetensors"), [("w", DType.F32, [1])]);
        File.CreateSymbolicLink(Path.Combine(folder, "a.safetensors"), "sub/../real.safetensors");
        CheckpointBuilder.Index(folder, new Dictionary<string, string> { ["w"] = "a.safetensors" }, 4);
        Assert.Equal(["w"], Checkpoint.Open(folder).Tensors.Select(t => t.Name));

        File.CreateSymbolicLink(Path.Combine(folder, "loop1.safetensors"), "loop2.safetensors");
        File.CreateSymbolicLink(Path.Combine(folder, "loop2.safetensors"), "loop1.safetensors");
        CheckpointBuilder.Index(folder, new Dictionary<string, string> { ["w"] = "loop1.safetensors" }, 4);
        var e = Assert.Throws<BigModelException>(() => Checkpoint.Open(folder));
        Assert.Equal(BigModelErrorCode.IndexPathEscapes, e.Code);
        Assert.Contains("loop", e.Message);
        Assert.Equal(BigModelErrorCode.IoFailure, Assert.Throws<BigModelException>(() => PathSafety.RealPath(Path.Combine(folder, "loop1.safetensors"))).Code);
    }

    [Fact]
    public void Rejects_an_index_naming_a_missing_shard()
    {
        var folder = _dir.Combine("h");
        Directory.CreateDirectory(folder);
        CheckpointBuilder.Index(folder, new Dictionary<string, string> { ["w"] = "model-00001-of-00002.safetensors" }, null);
        Assert.Equal(BigModelErrorCode.IndexShardMissing, Assert.Throws<BigModelException>(() => Checkpoint.Open(folder)).Code);
    }

    [Fact]
    public void Rejects_an_index_naming_a_tensor_absent_from_its_shard()
    {
        var folder = CheckpointBuilder.Sharded(_dir.Combine("s"), [Layer0, Rest]);
        var map = Layer0.Concat(Rest).ToDictionary(t => t.Item1, t => Layer0.Contains(t) ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors");
        map["model.layers.0.mlp.up_proj.weight"] = "model-00002-of-00002.safetensors";
        CheckpointBuilder.Index(folder, map, null);
        var e = Assert.Throws<BigModelException>(() => Checkpoint.Open(folder));
        Assert.Equal(BigModelErrorCode.IndexTensorMissingFromShard, e.Code);
        Assert.Equal("model.layers.0.mlp.up_proj.weight", e.Tensor);
    }

    [Theory]
    [InlineData("not json", BigModelErrorCode.IndexNotJson)]
    [InlineData("[]", BigModelErrorCode.IndexNotJson)]
    [InlineData("{\"metadata\":{}}", BigModelErrorCode.IndexMissingWeightMap)]
    [InlineData("{\"weight_map\":{\"a\":1}}", BigModelErrorCode.IndexInvalidEntry)]
    [InlineData("{\"weight_map\":{\"a\":\"x.safetensors\",\"a\":\"y.safetensors\"}}", BigModelErrorCode.DuplicateTensorAcrossShards)]
    [InlineData("{\"metadata\":{\"total_size\":-5},\"weight_map\":{}}", BigModelErrorCode.IndexInvalidEntry)]
    public void Rejects_malformed_indexes(string json, BigModelErrorCode code)
    {
        var folder = _dir.Combine("i");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), json);
        Assert.Equal(code, Assert.Throws<BigModelException>(() => Checkpoint.Open(folder)).Code);
    }

    [Fact]
    public void Warns_about_tensors_the_index_does_not_list_and_a_wrong_total()
    {
        var folder = CheckpointBuilder.Sharded(_dir.Combine("s"), [Layer0, Rest]);
        var map = Layer0.Skip(1).ToDictionary(t => t.Item1, _ => "model-00001-of-00002.safetensors");
        foreach (var t in Rest) map[t.Item1] = "model-00002-of-00002.safetensors";
        CheckpointBuilder.Index(folder, map, 1);
        var checkpoint = Checkpoint.Open(folder);
        Assert.Equal(6, checkpoint.Tensors.Count);
        Assert.Contains(checkpoint.Warnings, w => w.Code == BigModelErrorCode.IndexTensorNotListed && w.Tensor == "model.layers.0.mlp.up_proj.weight");
        Assert.Contains(checkpoint.Warnings, w => w.Code == BigModelErrorCode.IndexTotalSizeMismatch);
    }

    [Fact]
    public void Names_missing_paths_and_empty_folders_clearly()
    {
        Assert.Equal(BigModelErrorCode.PathNotFound, Assert.Throws<BigModelException>(() => Checkpoint.Open(_dir.Combine("nope"))).Code);
        Directory.CreateDirectory(_dir.Combine("empty"));
        var e = Assert.Throws<BigModelException>(() => Checkpoint.Open(_dir.Combine("empty")));
        Assert.Equal(BigModelErrorCode.NotACheckpoint, e.Code);
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void Refuses_to_guess_between_several_weight_files()
    {
        CheckpointBuilder.Safetensors(_dir.Combine("a", "x.safetensors"), [("w", DType.F32, [1])]);
        CheckpointBuilder.Safetensors(_dir.Combine("a", "y.safetensors"), [("w", DType.F32, [1])]);
        Assert.Equal(BigModelErrorCode.AmbiguousCheckpoint, Assert.Throws<BigModelException>(() => Checkpoint.Open(_dir.Combine("a"))).Code);
    }

    [Fact]
    public void Reports_a_broken_config_as_a_typed_error()
    {
        var folder = _dir.Combine("c");
        CheckpointBuilder.Safetensors(Path.Combine(folder, "model.safetensors"), [("w", DType.F32, [1])]);
        CheckpointBuilder.Config(folder, "{\"hidden_size\": \"big\"}");
        Assert.Equal(BigModelErrorCode.ConfigInvalidValue, Assert.Throws<BigModelException>(() => Checkpoint.Open(folder)).Code);
        CheckpointBuilder.Config(folder, "{\"hidden_size\": 1e30}");
        Assert.Equal(BigModelErrorCode.ConfigInvalidValue, Assert.Throws<BigModelException>(() => Checkpoint.Open(folder)).Code);
        CheckpointBuilder.Config(folder, new string('[', 10_000));
        Assert.Equal(BigModelErrorCode.ConfigNotJson, Assert.Throws<BigModelException>(() => Checkpoint.Open(folder)).Code);
    }

    [SkippableModelFact]
    public void Reads_stories260K()
    {
        var checkpoint = Checkpoint.Open(SharedModels.Stories260K);
        Assert.Equal(47, checkpoint.Tensors.Count);
        Assert.Equal("llama", checkpoint.Architecture!.Family);
        Assert.Equal("model.embed_tokens.weight", checkpoint.Tensors[0].Name);
        Assert.Equal("model.norm.weight", checkpoint.Tensors[^1].Name);
        Assert.True(checkpoint.Config!.TieWordEmbeddingsValue);
    }

    [Fact]
    public void Totals_beyond_64_bits_across_shards_are_a_typed_error()
    {
        // Two PyTorch shards of 4096 broadcast views of 2^50 bytes each (the most one view may describe): each shard
        // adds up to 2^62, the checkpoint to 2^63, one more than a long holds.
        var folder = _dir.Combine("views");
        Directory.CreateDirectory(folder);
        var map = new Dictionary<string, string>();
        for (int shard = 0; shard < 2; shard++)
        {
            var file = $"pytorch_model-0000{shard + 1}-of-00002.bin";
            var p = new PickleBuilder().Proto(2).OrderedDict().Mark();
            for (int i = 0; i < 4096; i++)
            {
                var name = $"s{shard}.v{i}";
                p.Str(name).TensorV2("ByteStorage", "0", 1, 0, [1L << 25, 1L << 25], [0, 0]);
                map[name] = file;
            }
            BigModel.Fuzz.Archives.TorchArchive.Write(Path.Combine(folder, file), p.SetItems().Stop().ToArray(), [("0", new byte[1])]);
        }
        CheckpointBuilder.Index(folder, map, null, "pytorch_model.bin.index.json");
        var e = Assert.Throws<BigModelException>(() => Checkpoint.Open(folder));
        Assert.Equal(BigModelErrorCode.CheckpointTooLarge, e.Code);
    }
}
