using System.Text.Json;
using BigModel.Checkpoints;
using BigModel.Checkpoints.PyTorch;
using BigModel.Errors;

namespace BigModel.Tests.Checkpoints.PyTorch;

/// <summary>
/// The committed attack corpus (tests/Unit/fixtures/pytorch/attacks, see attacks.json): every hostile archive is
/// refused with its own error code and a message naming the offending global, entry or key, and none of the
/// payloads that the generator proved to run code under a plain pickle.loads leaves its marker file behind.
/// </summary>
public sealed class PickleAttackCorpusTests
{
    private sealed record Attack(string File, string Code, string[] Mentions, string? Marker, long? MaxPickleBytes);

    private static IReadOnlyList<Attack> Corpus()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(PyTorchFixtureTests.Fixture("attacks", "attacks.json")));
        return doc.RootElement.EnumerateArray().Select(a => new Attack(
            a.GetProperty("file").GetString()!,
            a.GetProperty("code").GetString()!,
            a.GetProperty("mentions").EnumerateArray().Select(m => m.GetString()!).ToArray(),
            a.GetProperty("marker").ValueKind == JsonValueKind.Null ? null : a.GetProperty("marker").GetString(),
            a.TryGetProperty("limits", out var limits) ? limits.GetProperty("MaxPickleBytes").GetInt64() : null)).ToList();
    }

    public static TheoryData<string> AttackFiles()
    {
        var data = new TheoryData<string>();
        foreach (var a in Corpus()) data.Add(a.File);
        return data;
    }

    [Theory]
    [MemberData(nameof(AttackFiles))]
    public void Each_attack_is_refused_naming_what_is_wrong(string file)
    {
        var attack = Corpus().Single(a => a.File == file);
        if (attack.Marker is not null && File.Exists(attack.Marker)) File.Delete(attack.Marker);
        var path = PyTorchFixtureTests.Fixture("attacks", file);
        var limits = attack.MaxPickleBytes is long max ? new PyTorchLimits { MaxPickleBytes = max } : null;

        var e = Assert.Throws<BigModelException>(() => PyTorchCheckpointReader.ReadTensors(path, limits));

        Assert.Equal(attack.Code, e.Code.ToString());
        foreach (var mention in attack.Mentions) Assert.Contains(mention, e.Message);
        Assert.Equal(Path.GetFullPath(path), e.File);
        if (attack.Marker is not null) Assert.False(File.Exists(attack.Marker), $"{file} created {attack.Marker}");
    }

    [Fact]
    public void The_corpus_covers_every_protocol_and_every_code_running_opcode()
    {
        var corpus = Corpus();
        Assert.True(corpus.Count >= 40);
        foreach (var p in new[] { "protocol0", "protocol1", "protocol2", "protocol3", "protocol4", "protocol5" })
            Assert.Contains(corpus, a => a.File.Contains(p) && a.Code == "PickleForbiddenGlobal" && a.Marker is not null);
        foreach (var op in new[] { "inst_", "obj_", "newobj_", "stack_global", "build_", "reduce_", "ext1" })
            Assert.Contains(corpus, a => a.File.StartsWith(op) || a.File.Contains(op));
        Assert.True(corpus.Count(a => a.Marker is not null) >= 10);
    }

    [Fact]
    public void Opening_an_attack_through_Checkpoint_Open_is_refused_the_same_way()
    {
        using var dir = new Support.TempDirectory();
        File.Copy(PyTorchFixtureTests.Fixture("attacks", "posix_system_protocol2.bin"), dir.Combine("pytorch_model.bin"));
        var e = Assert.Throws<BigModelException>(() => Checkpoint.Open(dir.Path));
        Assert.Equal(BigModelErrorCode.PickleForbiddenGlobal, e.Code);
        Assert.Equal(BigModelErrorCategory.Security, e.Category);
        Assert.Contains("posix.system", e.Message);
        Assert.NotNull(e.Offset);
    }
}
