using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using BigModel.Checkpoints;
using BigModel.Errors;

namespace BigModel.Inference;

/// <summary>
/// Copies tensors of a checkpoint that cannot be memory-mapped as they are (PyTorch archives) into one safetensors
/// file of an offload folder, so disk-placed blocks can then be mapped like any safetensors shard. The file is named
/// after a hash of the source tensors and files (sizes, times), written to a temporary name and renamed when
/// complete, so an interrupted conversion never leaves a file that looks finished, and an unchanged source is
/// converted only once.
/// </summary>
internal static class OffloadConverter
{
    public static IReadOnlyDictionary<string, TensorInfo> Convert(IReadOnlyList<TensorInfo> tensors, string folder,
        IProgress<InferenceLoadProgress>? progress, CancellationToken cancel)
    {
        if (tensors.Count == 0) return new Dictionary<string, TensorInfo>();
        try
        {
            Directory.CreateDirectory(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BigModelException(BigModelErrorCode.IoFailure, $"the offload folder cannot be created: {e.Message}", folder, inner: e);
        }
        var target = Path.Combine(folder, "offload-" + Key(tensors) + ".safetensors");
        if (TryReuse(target, tensors) is { } reused) return reused;

        var layout = SafetensorsLayout.Create(tensors.Select(t => new TensorSpec(t.Name, t.DType, t.Shape.ToArray())),
            new Dictionary<string, string> { ["format"] = "pt" });
        var byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var temp = target + ".tmp-" + Guid.NewGuid().ToString("N")[..12];
        long total = layout.DataLength, done = 0;
        try
        {
            using (var writer = new SafetensorsWriter(temp, layout))
            {
                var buffer = new byte[TensorData.DefaultChunkBytes];
                int index = 0;
                foreach (var (spec, _) in layout.Tensors)
                {
                    cancel.ThrowIfCancellationRequested();
                    progress?.Report(new InferenceLoadProgress("Converting", spec.Name, index++, layout.Tensors.Count, done, total));
                    TensorData.Read(byName[spec.Name], chunk => writer.Write(chunk), buffer);
                    done += spec.ByteLength;
                }
                writer.Complete();
            }
            try
            {
                File.Move(temp, target, overwrite: false);
            }
            catch (IOException) when (File.Exists(target))
            {
                // Another process finished the same conversion first; its file is as good as ours.
                File.Delete(temp);
            }
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        return TryReuse(target, tensors)
            ?? throw new BigModelException(BigModelErrorCode.WriteVerificationFailed, "the converted offload file does not hold the tensors written to it.", target);
    }

    private static Dictionary<string, TensorInfo>? TryReuse(string path, IReadOnlyList<TensorInfo> tensors)
    {
        if (!File.Exists(path)) return null;
        SafetensorsHeader header;
        try
        {
            header = SafetensorsHeader.Read(path);
        }
        catch (BigModelException)
        {
            return null;
        }
        var stored = header.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var result = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            if (!stored.TryGetValue(t.Name, out var s) || s.DType != t.DType || !s.Shape.SequenceEqual(t.Shape)) return null;
            result[t.Name] = s;
        }
        return result;
    }

    private static string Key(IReadOnlyList<TensorInfo> tensors)
    {
        var text = new StringBuilder();
        foreach (var file in tensors.Select(t => t.File).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
        {
            var info = new FileInfo(file);
            text.Append(file).Append('|').Append(info.Length.ToString(CultureInfo.InvariantCulture)).Append('|')
                .Append(info.LastWriteTimeUtc.Ticks.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
        foreach (var t in tensors.OrderBy(t => t.Name, StringComparer.Ordinal))
            text.Append(t.Name).Append('|').Append(t.DType).Append('|').Append(t.ShapeText).Append('|')
                .Append(t.DataOffset.ToString(CultureInfo.InvariantCulture)).Append('\n');
        return System.Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..16].ToLowerInvariant();
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
