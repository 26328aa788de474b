using System.Diagnostics;
using System.Globalization;

namespace BigModel.Bench;

/// <summary>Timing helpers: repeated runs summarised by median and spread, and process memory readings.</summary>
public static class Measure
{
    public sealed record Timing(double MedianMs, double MinMs, double MaxMs, int Runs)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{MedianMs:0.###} ms (min {MinMs:0.###}, max {MaxMs:0.###}, {Runs} runs)");
    }

    public static Timing Repeat(int runs, Action action)
    {
        var times = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            times[i] = clock.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return new Timing(times[runs / 2], times[0], times[^1], runs);
    }

    /// <summary>A field of /proc/self/status in bytes (VmHWM, VmRSS, RssAnon...), or null off Linux.</summary>
    public static long? ProcStatus(string field)
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return null;
        foreach (var line in File.ReadLines(path))
        {
            if (!line.StartsWith(field + ":", StringComparison.Ordinal)) continue;
            var parts = line[(field.Length + 1)..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return long.Parse(parts[0], CultureInfo.InvariantCulture) * 1024;
        }
        return null;
    }

    public static string F(double value, string format = "0.##") => value.ToString(format, CultureInfo.InvariantCulture);
}
