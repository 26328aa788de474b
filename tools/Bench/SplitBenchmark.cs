using System.Diagnostics;
using System.Text.Json;

namespace BigModel.Bench;

/// <summary>
/// Split-Checkpoint's core against <c>cp</c> of the same bytes on the same disk in the same run, on a generated
/// checkpoint of random F32 tensors (2.2 GB; 256 MB with --quick). The split runs in a separate process (the test
/// harness's <c>bench</c> command), so its peak RSS is the splitter's own. Goals: at least 0.9 of cp's throughput,
/// at most 128 MiB peak RSS whatever the model size.
/// </summary>
public sealed class SplitBenchmark : IBenchmark
{
    public string Name => "split";

    public string Run(BenchContext context)
    {
        var harness = HarnessPath();
        long size = context.Quick ? 256_000_000 : 2_200_000_000;
        var source = context.Scratch($"split-source-{size}");
        if (!File.Exists(Path.Combine(source, "model.safetensors")))
            Harness(harness, "generate", "--out", source, "--size", size.ToString(), "--tensor-size", "64MiB", "--seed", "1");
        var work = context.Scratch("split-work");
        int repeat = context.Quick ? 2 : 5;
        var copy = Harness(harness, "bench", source, work, "--max-shard-size", context.Quick ? "100MB" : "500MB", "--repeat", repeat.ToString());
        var convert = Harness(harness, "bench", source, work, "--max-shard-size", context.Quick ? "100MB" : "500MB", "--repeat", "1", "--dtype", "bfloat16");
        return $"""
            ## Split-Checkpoint against cp

            A generated checkpoint ({Measure.F(copy.GetProperty("sourceBytes").GetInt64() / 1e9, "0.00")} GB, {copy.GetProperty("tensors").GetInt32()} F32 tensors) is resharded into
            {copy.GetProperty("shards").GetInt32()} shards of at most {Measure.F(copy.GetProperty("maxShardSize").GetInt64() / 1e6, "0")} MB and, in alternation, copied with `cp` followed by `sync` of the copies
            (the split flushes every shard to disk too). Median of {repeat} runs each; the ratio is the median of cp's time over
            the split's per pair. Goals: ratio at least 0.9, peak RSS at most 128 MiB.

            | run | cp | split | ratio to cp | best run against best run | split peak RSS |
            |---|---|---|---|---|---|
            | same dtype (bytes copied in the kernel) | {Rate(copy, "cp")} | {Rate(copy, "split")} | {Measure.F(copy.GetProperty("ratioToCp").GetDouble())} | {Measure.F(copy.GetProperty("bestRatioToCp").GetDouble())} | {Measure.F(copy.GetProperty("peakRssMiB").GetDouble(), "0.0")} MiB |
            | to bfloat16 (converted in memory, half the bytes written) | {Rate(convert, "cp")} | {Rate(convert, "split")} | {Measure.F(convert.GetProperty("ratioToCp").GetDouble())} | {Measure.F(convert.GetProperty("bestRatioToCp").GetDouble())} | {Measure.F(convert.GetProperty("peakRssMiB").GetDouble(), "0.0")} MiB |

            """;
    }

    private static string Rate(JsonElement result, string tool) =>
        $"{Measure.F(result.GetProperty(tool + "Seconds").GetDouble())} s ({Measure.F(result.GetProperty(tool + "MBps").GetDouble(), "0")} MB/s)";

    /// <summary>Runs the harness; returns the JSON object its last line prints.</summary>
    private static JsonElement Harness(string harness, params string[] args)
    {
        var info = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(harness);
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info) ?? throw new InvalidOperationException("could not start the harness");
        var stderr = process.StandardError.ReadToEndAsync();
        var lines = new List<string>();
        string? line;
        while ((line = process.StandardOutput.ReadLine()) is not null)
        {
            Console.WriteLine("  " + line);
            lines.Add(line);
        }
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"the harness failed ({process.ExitCode}): {stderr.Result}");
        var json = lines.LastOrDefault(l => l.StartsWith('{'));
        return json is null ? default : JsonDocument.Parse(json).RootElement.Clone();
    }

    /// <summary>tests/Harness's output for the configuration this benchmark runner was built in.</summary>
    private static string HarnessPath()
    {
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var root = output;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "BigModel.sln"))) root = root.Parent;
        if (root is null) throw new InvalidOperationException("BigModel.sln not found above " + AppContext.BaseDirectory);
        var path = Path.Combine(root.FullName, "tests", "Harness", "bin", output.Parent!.Name, output.Name, "BigModel.Harness.dll");
        return File.Exists(path) ? path : throw new FileNotFoundException($"build tests/Harness ({output.Parent.Name}) first; not found", path);
    }
}
