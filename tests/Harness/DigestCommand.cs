using System.Text.Json;
using BigModel.Checkpoints;
using BigModel.Errors;

namespace BigModel.Harness;

/// <summary>
/// Reads every tensor of a checkpoint (a folder or a file; an offload folder's converted files too) and prints one
/// JSON line with the tensor count and a SHA-256 over all their names, dtypes, shapes and bytes (in name order, so
/// a checkpoint and its conversion compare equal), for comparing parallel readers.
/// </summary>
internal static class DigestCommand
{
    public static int Run(Arguments args)
    {
        var path = args.Positional(0, "PATH");
        try
        {
            var tensors = Directory.Exists(path) && Directory.EnumerateFiles(path, "offload-*.safetensors").ToList() is { Count: > 0 } converted
                ? converted.Order(StringComparer.Ordinal).SelectMany(f => SafetensorsHeader.Read(f).Tensors).ToList()
                : Checkpoint.Open(path).Tensors.ToList();
            var ordered = tensors.OrderBy(t => t.Name, StringComparer.Ordinal);
            Console.Out.WriteLine(JsonSerializer.Serialize(new { ok = true, tensors = tensors.Count, digest = CheckpointCheck.Digest(ordered) }));
            return 0;
        }
        catch (BigModelException e)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(new { ok = false, code = e.Code.ToString(), message = e.Message }));
            return 2;
        }
    }
}
