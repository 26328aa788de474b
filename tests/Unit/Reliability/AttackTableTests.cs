using System.Text.Json;
using BigModel.Errors;
using BigModel.Tests.Checkpoints.PyTorch;
using BigModel.Tests.Support;
using Xunit.Abstractions;

namespace BigModel.Tests.Reliability;

/// <summary>
/// The attack and probe tables of docs/reliability.md are the output of the harness's <c>attacks</c> command: the
/// command must still find every answer typed and as expected, and the document must list every archive of the
/// committed corpus with the code observed for it.
/// </summary>
public sealed class AttackTableTests(ITestOutputHelper output)
{
    [Fact]
    public void Every_attack_and_probe_ends_in_the_expected_typed_error()
    {
        var (code, text) = HarnessProcess.Run(TimeSpan.FromMinutes(3), "attacks", "--fixtures", PyTorchFixtureTests.Fixture("attacks"),
            "--stories", SharedModels.Stories260K);
        output.WriteLine(text);
        Assert.True(code == 0, text);
        Assert.DoesNotContain("UNTYPED", text, StringComparison.Ordinal);
        Assert.DoesNotContain("CREATED", text, StringComparison.Ordinal);
    }

    [Fact]
    public void The_reliability_document_lists_every_archive_of_the_corpus_with_its_observed_code()
    {
        var doc = File.ReadAllLines(Path.Combine(SharedModels.RepositoryRoot, "docs", "reliability.md"));
        using var corpus = JsonDocument.Parse(File.ReadAllText(PyTorchFixtureTests.Fixture("attacks", "attacks.json")));
        var missing = new List<string>();
        foreach (var attack in corpus.RootElement.EnumerateArray())
        {
            var file = attack.GetProperty("file").GetString()!;
            var name = attack.GetProperty("code").GetString()!;
            var code = Enum.Parse<BigModelErrorCode>(name);
            var row = $"| {file} | {name} | BM{(int)code:D4} {name} |";
            if (!doc.Any(l => l.StartsWith(row, StringComparison.Ordinal))) missing.Add(row);
        }
        Assert.True(missing.Count == 0, "docs/reliability.md lacks (regenerate with `BigModel.Harness attacks`):\n" + string.Join("\n", missing));
    }
}
