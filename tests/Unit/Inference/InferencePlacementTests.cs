using System.Text.Json.Nodes;
using BigModel.Checkpoints;
using BigModel.DeviceMaps;
using BigModel.Errors;
using BigModel.Fixtures.Sparse;
using BigModel.Inference;
using BigModel.Tests.Fixtures;
using BigModel.Tests.Support;

namespace BigModel.Tests.Inference;

/// <summary>
/// Placement from a measured budget, on a model far larger than any test machine's memory (a sparse checkpoint:
/// Llama-2-7B's shapes with 320 layers, 259 GB in float32, taking no disk). Runs alone: it plans twice from the
/// memory available at that moment, which other tests' allocations would move between the two plans.
/// </summary>
[Collection(AloneCollection.Name)]
public sealed class InferencePlacementTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly Checkpoint _checkpoint;

    public InferencePlacementTests()
    {
        var config = JsonNode.Parse(File.ReadAllText(TestFixtures.Config("llama-7b")))!;
        config["num_hidden_layers"] = 320;
        var configPath = _dir.Combine("config.json");
        File.WriteAllText(configPath, config.ToJsonString());
        SparseFixture.Generate(configPath, _dir.Combine("llama-320"));
        _checkpoint = Checkpoint.Open(_dir.Combine("llama-320"));
    }

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void A_deeper_prefetch_keeps_room_for_its_blocks_in_flight()
    {
        // One block in flight more or less is a layer (809 MB): far more than available memory moves between the
        // plans while no other test runs.
        long Resident(int depth) => InferencePlacement.Resolve(_checkpoint, null, null, null, null, 64, depth)
            .Entries.Where(e => e.Device == Device.Cpu).Sum(e => e.Bytes ?? 0);
        long none = Resident(0), one = Resident(1), two = Resident(2), four = Resident(4);
        Assert.True(none > one && one > two && two > four, $"resident bytes by prefetch depth 0/1/2/4: {none} / {one} / {two} / {four}");
        Assert.True(none < _checkpoint.ByteLength, "the model must not fit");
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(InferenceOptions.MaxPrefetchDepth + 1)]
    public void A_prefetch_depth_out_of_range_is_refused(int depth)
    {
        var e = Assert.Throws<BigModelException>(() => InferencePlacement.Resolve(_checkpoint, null, null, null, null, 64, depth));
        Assert.Equal(BigModelErrorCode.InvalidArgument, e.Code);
    }

    [Fact]
    public void Options_say_how_many_blocks_come_in_ahead()
    {
        Assert.Equal(2, new InferenceOptions().BlocksAhead);
        Assert.Equal(5, new InferenceOptions { PrefetchDepth = 5 }.BlocksAhead);
        Assert.Equal(0, new InferenceOptions { Prefetch = false, PrefetchDepth = 5 }.BlocksAhead);
    }
}
