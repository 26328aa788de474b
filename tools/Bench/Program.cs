using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using BigModel.Bench;

// Runs BigModel's benchmarks and writes docs/benchmarks.md.
//   dotnet run --project tools/Bench -c Release -- --report docs/benchmarks.md [--only name,name] [--quick] [--scratch DIR]
// A benchmark that needs a process of its own (a memory cgroup) starts this program again with --decode-child.
if (args.Length > 1 && args[0] == "--decode-child") return DecodeChild.Run(args);
string report = "docs/benchmarks.md";
string? only = null;
bool quick = false;
string scratch = Path.Combine(Path.GetTempPath(), "bigmodel-bench");
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--report": report = args[++i]; break;
        case "--only": only = args[++i]; break;
        case "--quick": quick = true; break;
        case "--scratch": scratch = args[++i]; break;
        default:
            Console.Error.WriteLine($"unknown argument '{args[i]}'");
            return 2;
    }
}

// The cgroup and offload sections come before the ones that load models into this process: once this process maps
// libtorch, its file pages stay charged outside the cgroup (so the cgroup's runs would not pay for them), and the
// offload section measures anonymous memory against this process's own footprint.
IBenchmark[] all = [new IndexReadBenchmark(), new DeviceMapPlanningBenchmark(), new SplitBenchmark(), new CgroupDecodeBenchmark(), new InferenceDecodeBenchmark(), new DecodeKernelBenchmark()];
var selected = only is null ? all : all.Where(b => only.Split(',').Contains(b.Name, StringComparer.OrdinalIgnoreCase)).ToArray();
Directory.CreateDirectory(scratch);
var context = new BenchContext(scratch, quick);
var sections = new List<string>();
foreach (var benchmark in selected)
{
    Console.WriteLine($"== {benchmark.Name}");
    var clock = Stopwatch.StartNew();
    var section = benchmark.Run(context);
    Console.WriteLine(section);
    Console.WriteLine($"({benchmark.Name} took {clock.Elapsed.TotalSeconds:0.0} s)");
    sections.Add(section);
}

var header = $"""
    # Benchmarks

    Written by `./build.sh --target=Bench` on {DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture)} UTC.
    Machine: {Environment.ProcessorCount} logical cores, {RuntimeInformation.OSDescription}, {RuntimeInformation.FrameworkDescription},
    {(File.Exists("/proc/meminfo") ? File.ReadLines("/proc/meminfo").First().Replace("MemTotal:", "memory").Trim() : "memory unknown")}.
    Numbers from one run; compare within a run, not across machines.

    """;
Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(report))!);
File.WriteAllText(report, header + "\n" + string.Join("\n", sections));
Console.WriteLine($"Report written to {report}");
return 0;
