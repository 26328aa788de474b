using BigModel.Errors;
using BigModel.Sharding;

namespace BigModel.Tests.Sharding;

/// <summary>huggingface_hub's own cases for split_state_dict_into_shards_factory (tests/test_serialization.py), and edges.</summary>
public sealed class ShardPlannerTests
{
    // DUMMY_STATE_DICT: the "tensor" is a list and its size is the sum of the list.
    private static readonly ShardCandidate[] Dummy =
    [
        new("layer_1", 6), new("layer_2", 10), new("layer_3", 30), new("layer_4", 2), new("layer_5", 2),
    ];

    private static Dictionary<string, string[]> FilesOf(ShardSplit split) =>
        split.Shards.ToDictionary(s => s.FileName, s => s.Tensors.ToArray());

    [Fact]
    public void Single_shard_takes_every_tensor_without_a_suffix()
    {
        var split = ShardPlanner.Split(Dummy, 100, "file{suffix}.dummy");
        Assert.False(split.IsSharded);
        Assert.Equal(new Dictionary<string, string[]> { ["file.dummy"] = ["layer_1", "layer_2", "layer_3", "layer_4", "layer_5"] }, FilesOf(split));
        Assert.Equal(Dummy.Select(d => new KeyValuePair<string, string>(d.Name, "file.dummy")), split.TensorToFile);
        Assert.Equal(50, split.TotalSize);
    }

    [Fact]
    public void Multiple_shards_are_greedy_and_an_oversized_tensor_is_appended_at_once()
    {
        var split = ShardPlanner.Split(Dummy, 10, "file{suffix}.dummy");
        Assert.True(split.IsSharded);
        Assert.Equal(
            [("file-00001-of-00004.dummy", new[] { "layer_1" }), ("file-00002-of-00004.dummy", ["layer_3"]),
             ("file-00003-of-00004.dummy", ["layer_2"]), ("file-00004-of-00004.dummy", ["layer_4", "layer_5"])],
            split.Shards.Select(s => (s.FileName, s.Tensors.ToArray())));
        Assert.Equal(
            [new("layer_1", "file-00001-of-00004.dummy"), new("layer_3", "file-00002-of-00004.dummy"), new("layer_2", "file-00003-of-00004.dummy"),
             new KeyValuePair<string, string>("layer_4", "file-00004-of-00004.dummy"), new("layer_5", "file-00004-of-00004.dummy")],
            split.TensorToFile);
        Assert.Equal(50, split.TotalSize);
    }

    [Fact]
    public void Tensors_sharing_a_storage_follow_the_first_and_count_once()
    {
        // test_tensor_same_storage: storage id = the list's first element.
        ShardCandidate[] state =
        [
            new("layer_1", 1, 1), new("layer_2", 2, 2), new("layer_3", 1, 1), new("layer_4", 2, 2), new("layer_5", 1, 1),
        ];
        var split = ShardPlanner.Split(state, 1);
        Assert.True(split.IsSharded);
        Assert.Equal(
            [("model-00001-of-00002.safetensors", new[] { "layer_2", "layer_4" }), ("model-00002-of-00002.safetensors", ["layer_1", "layer_3", "layer_5"])],
            split.Shards.Select(s => (s.FileName, s.Tensors.ToArray())));
        var map = split.TensorToFile.ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal("model-00002-of-00002.safetensors", map["layer_1"]);
        Assert.Equal("model-00001-of-00002.safetensors", map["layer_2"]);
        Assert.Equal("model-00002-of-00002.safetensors", map["layer_3"]);
        Assert.Equal("model-00001-of-00002.safetensors", map["layer_4"]);
        Assert.Equal("model-00002-of-00002.safetensors", map["layer_5"]);
        Assert.Equal(3, split.TotalSize);
    }

    [Fact]
    public void Docstring_example_is_not_optimal_on_purpose()
    {
        // "[6GB, 6GB, 2GB, 6GB, 2GB, 2GB] ... sharded as [6GB], [6+2GB], [6+2+2GB]" with a 10GB limit.
        long[] sizes = [6, 6, 2, 6, 2, 2];
        var split = ShardPlanner.Split(sizes.Select((s, i) => new ShardCandidate("t" + i, s)), 10);
        Assert.Equal([[6], [6, 2], [6, 2, 2]],
            split.Shards.Select(s => s.Tensors.Select(n => sizes[int.Parse(n[1..])]).ToArray()));
    }

    [Fact]
    public void A_tensor_exactly_at_the_limit_fits_and_one_byte_more_is_alone()
    {
        // The oversized "c" is appended while "a"+"b" is still open, so it comes first.
        var split = ShardPlanner.Split([new("a", 4), new("b", 6), new("c", 11), new("d", 10)], 10);
        Assert.Equal([["c"], ["a", "b"], ["d"]], split.Shards.Select(s => s.Tensors.ToArray()));
    }

    [Fact]
    public void Zero_sized_tensors_join_the_current_shard()
    {
        var split = ShardPlanner.Split([new("a", 10), new("empty", 0), new("b", 1)], 10);
        Assert.Equal([["a", "empty"], ["b"]], split.Shards.Select(s => s.Tensors.ToArray()));
    }

    [Fact]
    public void Names_widen_past_five_digits_like_python_formatting()
    {
        Assert.Equal("model-00002-of-00012.safetensors", ShardPlanner.ShardFileName(ShardPlanner.DefaultFilePattern, 1, 12));
        Assert.Equal("model-100000-of-100000.safetensors", ShardPlanner.ShardFileName(ShardPlanner.DefaultFilePattern, 99_999, 100_000));
        Assert.Equal("model.safetensors", ShardPlanner.ShardFileName(ShardPlanner.DefaultFilePattern, 0, 1));
    }

    [Fact]
    public void Refuses_bad_limits_duplicates_and_patterns()
    {
        Assert.Equal(BigModelErrorCode.InvalidSize, Assert.Throws<BigModelException>(() => ShardPlanner.Split(Dummy, 0)).Code);
        Assert.Equal(BigModelErrorCode.InvalidArgument,
            Assert.Throws<BigModelException>(() => ShardPlanner.Split([new("a", 1), new("a", 2)], 10)).Code);
        Assert.Equal(BigModelErrorCode.InvalidArgument, Assert.Throws<BigModelException>(() => ShardPlanner.Split(Dummy, 10, "model.bin")).Code);
    }
}
