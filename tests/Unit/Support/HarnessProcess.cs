using System.Diagnostics;
using System.Text.Json;

namespace BigModel.Tests.Support;

/// <summary>
/// The test harness (tests/Harness) as a child process: run to completion, or started and driven line by line (its
/// "phase" lines, and --pause-at, which holds it at a phase until a line arrives on its standard input).
/// </summary>
public sealed class HarnessProcess : IDisposable
{
    private readonly Process _process;
    private readonly Task<string> _stderr;
    private readonly System.Text.StringBuilder _stdout = new();

    private HarnessProcess(Process process)
    {
        _process = process;
        _stderr = process.StandardError.ReadToEndAsync();
    }

    /// <summary>Starts the harness with <paramref name="args"/>; standard input, output and error are redirected.</summary>
    public static HarnessProcess Start(params string[] args)
    {
        Assert.True(File.Exists(TestPaths.Harness), $"the harness is not built at {TestPaths.Harness}");
        var dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
        var info = new ProcessStartInfo(dotnet)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(TestPaths.Harness);
        foreach (var a in args) info.ArgumentList.Add(a);
        return new HarnessProcess(Process.Start(info)!);
    }

    /// <summary>Runs the harness to completion (killed after <paramref name="timeout"/>, exit code -1).</summary>
    public static (int Code, string Output) Run(TimeSpan timeout, params string[] args)
    {
        using var child = Start(args);
        return child.Finish(timeout);
    }

    /// <summary>Reads output lines until one equals <paramref name="line"/>; false if the output ends first.</summary>
    public bool WaitForLine(string line, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            var read = _process.StandardOutput.ReadLineAsync();
            if (!read.Wait(deadline - DateTime.UtcNow)) return false;
            if (read.Result is not { } text) return false;
            _stdout.AppendLine(text);
            if (text == line) return true;
        }
        return false;
    }

    /// <summary>Lets a child held by --pause-at go on.</summary>
    public void Resume()
    {
        _process.StandardInput.WriteLine();
        _process.StandardInput.Flush();
    }

    /// <summary>Waits for the exit; returns the exit code and everything printed.</summary>
    public (int Code, string Output) Finish(TimeSpan timeout)
    {
        var rest = _process.StandardOutput.ReadToEndAsync();
        if (!_process.WaitForExit(timeout))
        {
            _process.Kill(entireProcessTree: true);
            return (-1, $"timed out after {timeout}\n{_stdout}{_stderr.Result}");
        }
        return (_process.ExitCode, _stdout + rest.Result + _stderr.Result);
    }

    /// <summary>The last line of <paramref name="output"/> that is a JSON object (the harness commands end with one).</summary>
    public static JsonElement LastJson(string output) =>
        JsonDocument.Parse(output.Split('\n').Select(l => l.Trim()).Last(l => l.StartsWith('{'))).RootElement.Clone();

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            try
            {
                _process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // It exited in the meantime.
            }
        }
        _process.Dispose();
    }
}
