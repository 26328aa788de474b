using System.Diagnostics;

namespace BigModel.Harness;

/// <summary>Starts this harness again as a child process with other arguments.</summary>
internal static class ChildProcess
{
    public static ProcessStartInfo Harness(params string[] args)
    {
        var self = typeof(ChildProcess).Assembly.Location;
        var host = Environment.ProcessPath ?? "dotnet";
        // Started as "dotnet BigModel.Harness.dll" the host is dotnet and needs the dll; the apphost runs alone.
        bool viaDotnet = Path.GetFileNameWithoutExtension(host).Equals("dotnet", StringComparison.OrdinalIgnoreCase);
        var info = new ProcessStartInfo(host)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (viaDotnet) info.ArgumentList.Add(self);
        foreach (var a in args) info.ArgumentList.Add(a);
        return info;
    }

    /// <summary>Runs a program to completion, returning its exit code and combined output.</summary>
    public static (int ExitCode, string Output) Run(string program, IEnumerable<string> args, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {program}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} did not finish within {timeout}.");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }
}
