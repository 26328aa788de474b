using System.Diagnostics;

namespace BigModel.Tests.Support;

/// <summary>
/// The machine's Python with torch and numpy, used only to compute independent reference results
/// (BIGMODEL_PYTHON overrides the interpreter; /usr/bin/python3 is tried first).
/// </summary>
public static class PythonReference
{
    private static readonly Lazy<(string? Python, string Reason)> Probe = new(() => Find("import torch, numpy"));
    private static readonly Lazy<(string? Python, string Reason)> PlainProbe = new(() => Find("import json"));
    private static readonly Lazy<(string? Python, string Reason)> NumpyProbe = new(() => Find("import numpy"));

    /// <summary>A Python with torch and numpy, or null.</summary>
    public static string? Python => Probe.Value.Python;

    /// <summary>Why <see cref="Python"/> is unavailable, or "" when it is available.</summary>
    public static string Unavailable => Probe.Value.Reason;

    /// <summary>Any Python 3 (for scripts that need only the standard library), or null.</summary>
    public static string? PlainPython => PlainProbe.Value.Python;

    /// <summary>Why <see cref="PlainPython"/> is unavailable.</summary>
    public static string PlainUnavailable => PlainProbe.Value.Reason;

    /// <summary>A Python with numpy (the inference references need nothing more), or null.</summary>
    public static string? NumpyPython => NumpyProbe.Value.Python;

    /// <summary>Why <see cref="NumpyPython"/> is unavailable.</summary>
    public static string NumpyUnavailable => NumpyProbe.Value.Reason;

    public static string ScriptPath(string name) => Path.Combine(SharedModels.RepositoryRoot, "tests", "reference", name);

    /// <summary>Runs a script from tests/reference with arguments; throws with its output when it fails.</summary>
    public static string Run(string script, params string[] args) => RunWith(Python ?? throw new InvalidOperationException(Unavailable), script, args);

    /// <summary>As <see cref="Run"/> for scripts that need no third-party module.</summary>
    public static string RunPlain(string script, params string[] args) => RunWith(PlainPython ?? throw new InvalidOperationException(PlainUnavailable), script, args);

    /// <summary>Runs a numpy script from tests/reference and parses the JSON it prints.</summary>
    public static System.Text.Json.Nodes.JsonNode RunJson(string script, params string[] args) =>
        System.Text.Json.Nodes.JsonNode.Parse(RunWith(NumpyPython ?? throw new InvalidOperationException(NumpyUnavailable), script, args))!;

    /// <summary>A JSON array of arrays of numbers as a matrix.</summary>
    public static double[][] Matrix(System.Text.Json.Nodes.JsonNode node) =>
        node.AsArray().Select(r => r!.AsArray().Select(v => v!.GetValue<double>()).ToArray()).ToArray();

    private static string RunWith(string python, string script, string[] args)
    {
        var info = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(ScriptPath(script));
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{script} did not finish within 5 minutes.");
        }
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{script} failed with exit code {process.ExitCode}: {stderr.Result}{stdout.Result}");
        return stdout.Result;
    }

    private static (string?, string) Find(string import)
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("BIGMODEL_PYTHON") is { Length: > 0 } configured) candidates.Add(configured);
        candidates.Add("/usr/bin/python3");
        candidates.Add("python3");
        var reasons = new List<string>();
        foreach (var candidate in candidates.Distinct())
        {
            try
            {
                var info = new ProcessStartInfo(candidate, ["-c", import])
                {
                    RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
                };
                using var process = Process.Start(info)!;
                var stderr = process.StandardError.ReadToEndAsync();
                process.StandardOutput.ReadToEnd();
                if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
                {
                    process.Kill(entireProcessTree: true);
                    reasons.Add($"{candidate}: importing torch took over a minute");
                    continue;
                }
                if (process.ExitCode == 0) return (candidate, "");
                var lines = stderr.Result.Trim().Split('\n');
                reasons.Add($"{candidate}: {lines[^1]}");
            }
            catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
            {
                reasons.Add($"{candidate}: not found");
            }
        }
        return (null, $"no Python that can '{import}' for the reference computation (" + string.Join("; ", reasons) + "); set BIGMODEL_PYTHON");
    }
}

/// <summary>A fact that compares with torch; reported as skipped, with the reason, where Python with torch is missing.</summary>
public sealed class TorchReferenceFactAttribute : FactAttribute
{
    public TorchReferenceFactAttribute()
    {
        if (PythonReference.Python is null) Skip = PythonReference.Unavailable;
    }
}

/// <summary>A fact that runs a standard-library Python script; reported as skipped, with the reason, where there is no Python.</summary>
public sealed class PythonReferenceFactAttribute : FactAttribute
{
    public PythonReferenceFactAttribute()
    {
        if (PythonReference.PlainPython is null) Skip = PythonReference.PlainUnavailable;
    }
}
