using System.Globalization;
using System.Text;

namespace BigModel.Fuzz;

/// <summary>Writes a run's results as the Markdown section docs/reliability.md includes.</summary>
public static class FuzzReportWriter
{
    public static void Write(string path, IReadOnlyList<FuzzReport> reports, int seed, SeedSources sources)
    {
        var text = new StringBuilder();
        text.AppendLine("| format | inputs | accepted | typed errors | untyped failures / hangs / runaway allocations | slowest input | most allocated | time |");
        text.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var r in reports)
            text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Target} | {r.Inputs:N0} | {r.Accepted:N0} | {r.Rejected:N0} | {r.Findings.Count} | {r.SlowestMs:0.0} ms | {r.MostAllocated / 1048576.0:0.0} MiB | {r.Elapsed.TotalSeconds:0} s |"));
        text.AppendLine();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"Seed {seed}; seeds from stories260K: {(sources.Stories260K is null ? "absent" : "yes")}, MiniLM: {(sources.MiniLM is null ? "absent" : "yes")}, plus generated files. Typed errors by code:"));
        text.AppendLine();
        foreach (var r in reports)
            text.AppendLine($"- {r.Target}: " + string.Join(", ", r.RejectedBy.OrderByDescending(p => p.Value).Take(12).Select(p => $"{p.Key} {p.Value:N0}")));
        File.WriteAllText(path, text.ToString());
    }
}
