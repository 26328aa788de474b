using BigModel.Fuzz;
using BigModel.Fuzz.Targets;

// Mutation fuzzing of BigModel's file formats.
//   dotnet run --project tests/Fuzz -c Release -- [--target safetensors,index,config] [--iterations 100000] [--seed 1]
//       [--findings tests/fuzz-regressions] [--stories DIR] [--minilm DIR] [--report FILE]
var targets = FuzzTargets.All.Select(t => t.Name).ToList();
long iterations = 100_000;
int seed = 1;
string findings = "tests/fuzz-regressions";
string? stories = Environment.GetEnvironmentVariable("BIGMODEL_STORIES260K") ?? "../shared/models/stories260K";
string? minilm = "artifacts/fixtures/minilm";
string? report = null;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--target": targets = args[++i].Split(',').ToList(); break;
        case "--iterations": iterations = long.Parse(args[++i]); break;
        case "--seed": seed = int.Parse(args[++i]); break;
        case "--findings": findings = args[++i]; break;
        case "--stories": stories = args[++i]; break;
        case "--minilm": minilm = args[++i]; break;
        case "--report": report = args[++i]; break;
        default: Console.Error.WriteLine($"unknown argument {args[i]}"); return 2;
    }
}
var sources = new SeedSources(Directory.Exists(stories) ? stories : null, Directory.Exists(minilm) ? minilm : null, "tests/Unit/fixtures/pytorch/valid");
var reports = new List<FuzzReport>();
foreach (var name in targets)
{
    var target = FuzzTargets.All.FirstOrDefault(t => t.Name == name) ?? throw new ArgumentException($"unknown target {name}");
    var r = Fuzzer.Run(target, sources, iterations, seed, findings, log: Console.Out);
    reports.Add(r);
    Console.WriteLine($"{r.Target}: {r.Inputs:N0} inputs in {r.Elapsed.TotalSeconds:0.0} s: {r.Accepted:N0} accepted, {r.Rejected:N0} typed errors, {r.Findings.Count} findings; slowest {r.SlowestMs:0.0} ms, most allocated {r.MostAllocated:N0} bytes");
}
if (report is not null) FuzzReportWriter.Write(report, reports, seed, sources);
return reports.Sum(r => r.Findings.Count) == 0 ? 0 : 1;
