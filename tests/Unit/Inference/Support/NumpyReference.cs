using System.Diagnostics;
using System.Text.Json.Nodes;

namespace BigModel.Tests.Inference.Support;

/// <summary>
/// Runs the independent numpy reference implementations in tests/reference (numpy only, no torch). Python is BIGMODEL_PYTHON, else
/// /usr/bin/python3 (Debian's, with python3-numpy), else python3 on PATH; tests skip when none of them has numpy.
/// </summary>
public static class NumpyReference
{
    private static readonly Lazy<(string? Python, string? Missing)> s_python = new(Find);

    public static string? MissingReason => s_python.Value.Missing;

    public static string ScriptsFolder
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "tests", "reference");
                if (File.Exists(Path.Combine(candidate, "llama_reference.py"))) return candidate;
            }
            throw new InvalidOperationException("tests/reference was not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>Runs a reference script and parses the JSON it prints; fails the test on any error or after 5 minutes.</summary>
    public static JsonNode Run(string script, params string[] args)
    {
        var python = s_python.Value.Python ?? throw new InvalidOperationException(MissingReason);
        var start = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(ScriptsFolder, script));
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{script} did not finish within 5 minutes.");
        }
        if (process.ExitCode != 0) throw new InvalidOperationException($"{script} failed ({process.ExitCode}): {stderr.Result}");
        return JsonNode.Parse(stdout.Result)!;
    }

    public static double[][] Matrix(JsonNode node) =>
        node.AsArray().Select(r => r!.AsArray().Select(v => v!.GetValue<double>()).ToArray()).ToArray();

    private static (string?, string?) Find()
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("BIGMODEL_PYTHON") is { Length: > 0 } env) candidates.Add(env);
        candidates.Add("/usr/bin/python3");
        candidates.Add("python3");
        foreach (var python in candidates)
        {
            try
            {
                var start = new ProcessStartInfo(python, ["-c", "import numpy"]) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
                using var p = Process.Start(start);
                if (p is null) continue;
                if (!p.WaitForExit(TimeSpan.FromSeconds(60))) { p.Kill(true); continue; }
                if (p.ExitCode == 0) return (python, null);
            }
            catch (System.ComponentModel.Win32Exception)
            {
            }
        }
        return (null, "no python3 with numpy found (set BIGMODEL_PYTHON or install python3-numpy); the reference comparison cannot run");
    }
}
