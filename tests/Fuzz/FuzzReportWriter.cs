using System.Globalization;
using System.Text;

namespace BigModel.Fuzz;

/// <summary>Writes a run's results as docs/fuzz-results.md, which docs/reliability.md refers to.</summary>
public static class FuzzReportWriter
{
    public static void Write(string path, IReadOnlyList<FuzzReport> reports, int seed, SeedSources sources, FuzzLimits? limits = null)
    {
        limits ??= new FuzzLimits();
        var text = new StringBuilder();
        text.AppendLine("# Fuzzing results");
        text.AppendLine();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"Written by `./build.sh --target=Fuzz` (tests/Fuzz) on {DateTime.UtcNow:yyyy-MM-dd} UTC; see [reliability.md](reliability.md) for what each format's target does and the mutations applied. "
            + $"Each input must end in success or a typed `BigModelException` within {limits.Timeout.TotalSeconds:0} s and {limits.AllocationAllowance >> 20} MiB + {limits.AllocationPerInputByte} × its length of allocation; anything else is a finding, saved under tests/fuzz-regressions/."));
        text.AppendLine();
        text.AppendLine("| format | inputs | accepted | typed errors | untyped failures / hangs / runaway allocations | slowest input | most allocated | time |");
        text.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var r in reports)
            text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Target} | {r.Inputs:N0} | {r.Accepted:N0} | {r.Rejected:N0} | {r.Findings.Count} | {r.SlowestMs:0.0} ms | {r.MostAllocated / 1048576.0:0.0} MiB | {r.Elapsed.TotalSeconds:0} s |"));
        text.AppendLine();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"Random seed {seed}; seeds from stories260K: {(sources.Stories260K is null ? "absent" : "yes")}, MiniLM: {(sources.MiniLM is null ? "absent" : "yes")}, plus generated files and the torch-written archives of tests/Unit/fixtures/pytorch/valid. Typed errors by code (most frequent first):"));
        text.AppendLine();
        foreach (var r in reports)
            text.AppendLine($"- {r.Target}: " + string.Join(", ", r.RejectedBy.OrderByDescending(p => p.Value).Take(12).Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Key} {p.Value:N0}"))));
        var findings = reports.SelectMany(r => r.Findings).ToList();
        if (findings.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("Findings:");
            text.AppendLine();
            foreach (var f in findings) text.AppendLine($"- {f.Detail} ({f.SavedAs})");
        }
        if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } folder) Directory.CreateDirectory(folder);
        File.WriteAllText(path, text.ToString());
    }
}
