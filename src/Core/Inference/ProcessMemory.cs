using System.Globalization;

namespace BigModel.Inference;

/// <summary>
/// This process's memory as the kernel counts it (/proc/self/status): anonymous pages (heap, copies of weights),
/// file-backed pages (mapped weights, which the kernel may drop at any time) and the peak resident size.
/// </summary>
public readonly record struct ProcessMemory(long RssAnonBytes, long RssFileBytes, long PeakRssBytes)
{
    /// <summary>The current figures; zeros where /proc is not available.</summary>
    public static ProcessMemory Read()
    {
        if (!OperatingSystem.IsLinux()) return default;
        try
        {
            return Parse(File.ReadAllText("/proc/self/status"));
        }
        catch (IOException)
        {
            return default;
        }
    }

    internal static ProcessMemory Parse(string status)
    {
        long anon = 0, file = 0, peak = 0;
        foreach (var line in status.Split('\n'))
        {
            if (line.StartsWith("RssAnon:", StringComparison.Ordinal)) anon = Kilobytes(line);
            else if (line.StartsWith("RssFile:", StringComparison.Ordinal)) file = Kilobytes(line);
            else if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) peak = Kilobytes(line);
        }
        return new ProcessMemory(anon, file, peak);
    }

    private static long Kilobytes(string line)
    {
        var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        return parts.Length >= 2 && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var kb) ? kb * 1024 : 0;
    }
}

/// <summary>Samples anonymous memory on a background thread and keeps the peak, for measuring a run.</summary>
public sealed class AnonymousMemoryPeak : IDisposable
{
    private readonly Thread _thread;
    private readonly CancellationTokenSource _stop = new();
    private long _peak;

    public AnonymousMemoryPeak(TimeSpan interval)
    {
        _peak = ProcessMemory.Read().RssAnonBytes;
        _thread = new Thread(() =>
        {
            while (!_stop.Token.WaitHandle.WaitOne(interval)) Sample();
        }) { IsBackground = true, Name = "BigModel memory sampler" };
        _thread.Start();
    }

    /// <summary>Highest RssAnon seen so far, in bytes.</summary>
    public long PeakBytes => Interlocked.Read(ref _peak);

    /// <summary>Takes a sample now (call at points of interest, such as after each token).</summary>
    public void Sample()
    {
        long now = ProcessMemory.Read().RssAnonBytes;
        long seen;
        while (now > (seen = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, now, seen) != seen)
        {
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _thread.Join();
        _stop.Dispose();
    }
}
