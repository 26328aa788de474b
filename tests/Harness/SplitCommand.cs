using System.Text.Json;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Sharding;

namespace BigModel.Harness;

/// <summary>One split, reported as a JSON line; with --phases also a line per phase, flushed, for a parent to react to.</summary>
internal static class SplitCommand
{
    public static int Run(Arguments args)
    {
        var source = args.Positional(0, "SOURCE");
        var destination = args.Positional(1, "DEST");
        bool phases = args.Flag("phases");
        var pauseAt = args.Option("pause-at");
        var options = new SplitOptions
        {
            MaxShardSize = args.Size("max-shard-size", ShardPlanner.DefaultMaxShardSize),
            DType = args.Option("dtype") is { } d ? DTypes.Parse(d) : null,
            Force = args.Flag("force"),
            ChunkBytes = (int)args.Size("chunk", 8 << 20),
            CheckFreeSpace = !args.Flag("no-free-space-check"),
        };
        var last = (Phase: (SplitPhase)(-1), Shard: -1);
        var progress = new Reporter(p =>
        {
            if (!phases || (p.Phase, p.Shard) == last) return;
            last = (p.Phase, p.Shard);
            PhaseLine.Write(p.Phase == SplitPhase.WritingShards ? $"phase {p.Phase} {p.Shard}" : $"phase {p.Phase}", pauseAt);
        });
        try
        {
            var result = CheckpointSplitter.Split(Checkpoint.Open(source), destination, options, progress);
            Console.Out.WriteLine(JsonSerializer.Serialize(new
            {
                ok = true,
                shards = result.ShardFiles.Count,
                bytes = result.BytesWritten,
                seconds = result.Elapsed.TotalSeconds,
                bytesPerSecond = result.BytesPerSecond,
                peakRssBytes = Memory.PeakRssBytes(),
            }));
            return 0;
        }
        catch (BigModelException e)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(new { ok = false, code = e.Code.ToString(), message = e.Message, peakRssBytes = Memory.PeakRssBytes() }));
            return 2;
        }
    }

    internal sealed class Reporter(Action<SplitProgress> action) : IProgress<SplitProgress>
    {
        public void Report(SplitProgress value) => action(value);
    }
}
