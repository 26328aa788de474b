using BigModel.Errors;
using BigModel.Fuzz;
using BigModel.Tests.Fixtures;
using BigModel.Tests.Support;

namespace BigModel.Tests.Reliability;

/// <summary>Every input the fuzzer ever flagged, replayed; and a short, deterministic fuzzing run per format.</summary>
public sealed class FuzzRegressionTests
{
    public static TheoryData<string, string> RegressionFiles()
    {
        var data = new TheoryData<string, string>();
        var root = Path.Combine(SharedModels.RepositoryRoot, "tests", "fuzz-regressions");
        foreach (var target in FuzzTargets.All)
        {
            var folder = Path.Combine(root, target.Name);
            if (!Directory.Exists(folder)) continue;
            foreach (var file in Directory.GetFiles(folder, "*.bin").Order())
                data.Add(target.Name, Path.GetFileName(file));
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(RegressionFiles))]
    public async Task A_former_finding_now_ends_in_success_or_a_typed_error(string target, string file)
    {
        var input = File.ReadAllBytes(Path.Combine(SharedModels.RepositoryRoot, "tests", "fuzz-regressions", target, file));
        using var scratch = new Scratch();
        var fuzzTarget = FuzzTargets.All.Single(t => t.Name == target);
        // Targets that repack inputs need their seed layouts.
        fuzzTarget.Seeds(new SeedSources(null, null, Path.Combine(SharedModels.RepositoryRoot, "tests", "Unit", "fixtures", "pytorch", "valid")));
        var run = Task.Run(() =>
        {
            try { fuzzTarget.Execute(input, scratch); }
            catch (BigModelException) { }
        });
        var finished = await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(30)));
        Assert.True(finished == run, $"{target}/{file} did not finish within 30 s");
        await run;
    }

    public static TheoryData<string> Targets() => new(FuzzTargets.All.Select(t => t.Name));

    private static SeedSources AllSources() =>
        new(SharedModels.HasStories260K ? SharedModels.Stories260K : null, TestFixtures.MiniLm,
            Path.Combine(SharedModels.RepositoryRoot, "tests", "Unit", "fixtures", "pytorch", "valid"));

    [Theory]
    [MemberData(nameof(Targets))]
    public void Every_seed_is_a_valid_input(string target)
    {
        // A seed the target rejects would only teach the fuzzer that one error path.
        var fuzzTarget = FuzzTargets.All.Single(t => t.Name == target);
        var seeds = fuzzTarget.Seeds(AllSources());
        using var scratch = new Scratch();
        Assert.True(seeds.Count >= 2, $"{target} has {seeds.Count} seed(s)");
        for (int i = 0; i < seeds.Count; i++)
        {
            var error = Record.Exception(() => fuzzTarget.Execute(seeds[i], scratch));
            Assert.True(error is null, $"{target} seed {i} ({seeds[i].Length} bytes) is rejected: {error}");
        }
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void A_short_fuzzing_run_finds_nothing(string target)
    {
        var sources = AllSources();
        using var findings = new TempDirectory();
        var report = Fuzzer.Run(FuzzTargets.All.Single(t => t.Name == target), sources, iterations: 1500, seed: 20261125, findings.Path);
        Assert.True(report.Findings.Count == 0, string.Join(Environment.NewLine, report.Findings.Select(f => f.Detail)));
        Assert.Equal(1500, report.Inputs);
        Assert.True(report.Rejected > 0, "the mutations never produced an invalid input: the run tested nothing");
    }
}
