using System.Text.Json;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Inference;

namespace BigModel.Harness;

/// <summary>
/// One conversion of a checkpoint's tensors into an offload folder (what a session does for disk-placed weights of a
/// PyTorch archive), reported as a JSON line; with --phases also a line per phase, flushed, for a parent to react to.
/// </summary>
internal static class OffloadCommand
{
    public static int Run(Arguments args)
    {
        var source = args.Positional(0, "SOURCE");
        var folder = args.Positional(1, "FOLDER");
        bool phases = args.Flag("phases");
        var pauseAt = args.Option("pause-at");
        var last = "";
        var progress = new Reporter(p =>
        {
            var line = p.Stage == "Converting" ? $"phase Converting {p.BlocksDone + 1}" : $"phase {p.Stage}";
            if (line == last) return;
            last = line;
            if (phases) PhaseLine.Write(line, pauseAt);
        });
        try
        {
            var tensors = Checkpoint.Open(source).Tensors;
            var converted = OffloadConverter.Convert(tensors, folder, progress, CancellationToken.None, checkFreeSpace: !args.Flag("no-free-space-check"));
            if (phases) PhaseLine.Write("phase Completed", pauseAt);
            var file = converted.Values.First().File;
            Console.Out.WriteLine(JsonSerializer.Serialize(new { ok = true, file = Path.GetFileName(file), digest = CheckpointCheck.Digest(converted.Values.OrderBy(t => t.Name, StringComparer.Ordinal)) }));
            return 0;
        }
        catch (BigModelException e)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(new { ok = false, code = e.Code.ToString(), message = e.Message }));
            return 2;
        }
    }

    private sealed class Reporter(Action<InferenceLoadProgress> action) : IProgress<InferenceLoadProgress>
    {
        public void Report(InferenceLoadProgress value) => action(value);
    }
}
