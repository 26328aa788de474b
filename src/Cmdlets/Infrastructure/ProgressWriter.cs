using System.Diagnostics;
using System.Management.Automation;
using BigModel.IO;

namespace BigModel.Cmdlets.Infrastructure;

/// <summary>
/// Write-Progress for byte-counted work, throttled (PowerShell renders each record, and per-chunk updates would
/// cost more than the work), with throughput and time remaining.
/// </summary>
internal sealed class ProgressWriter
{
    private readonly Cmdlet _cmdlet;
    private readonly ProgressRecord _record;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private long _lastTicks = long.MinValue;

    public ProgressWriter(Cmdlet cmdlet, int activityId, string activity)
    {
        _cmdlet = cmdlet;
        _record = new ProgressRecord(activityId, activity, "Starting");
    }

    public void Report(long done, long total, string? current, bool force = false)
    {
        long now = _clock.ElapsedTicks;
        if (!force && now - _lastTicks < Stopwatch.Frequency / 5) return;
        _lastTicks = now;
        double seconds = Math.Max(_clock.Elapsed.TotalSeconds, 1e-3);
        double rate = done / seconds;
        _record.PercentComplete = total > 0 ? (int)Math.Clamp(done * 100 / total, 0, 100) : -1;
        _record.StatusDescription = $"{ByteSize.Format(done)} of {ByteSize.Format(total)} at {ByteSize.Format((long)rate)}/s";
        _record.CurrentOperation = current ?? "";
        _record.SecondsRemaining = rate > 0 && total > done ? (int)Math.Min((total - done) / rate, int.MaxValue) : -1;
        _cmdlet.WriteProgress(_record);
    }

    public void Complete()
    {
        _record.RecordType = ProgressRecordType.Completed;
        _cmdlet.WriteProgress(_record);
    }
}
