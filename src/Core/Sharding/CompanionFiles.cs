using BigModel.IO;

namespace BigModel.Sharding;

/// <summary>Chooses the files of a checkpoint folder that are not weights, as save_pretrained's folder would hold them.</summary>
internal static class CompanionFiles
{
    // Weight and index formats of transformers, diffusers, TensorFlow, Flax, ONNX, GGUF and training checkpoints:
    // copying them would leave stale or duplicate weights next to the new shards.
    private static readonly string[] WeightExtensions =
        [".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx", ".onnx_data", ".tflite", ".ot", ".pb", ".npz", ".pkl"];

    private const int MaxDepth = 8;
    private const int MaxFiles = 10_000;

    public static bool IsWeightFile(string name) =>
        name.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase)
        || WeightExtensions.Any(e => name.EndsWith(e, StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// Lists what to copy from <paramref name="directory"/>: regular files at any depth, except weights, hidden entries
    /// (.git, .cache, lock and staging files) and links whose target lies outside the folder. The one exception to the
    /// last rule is the Hugging Face cache layout, where <c>snapshots/REV/x</c> links into the repository's <c>blobs/</c>.
    /// </summary>
    public static List<CompanionFile> Find(string directory, bool updatesDType, List<string> warnings)
    {
        var root = Path.GetFullPath(directory);
        var realRoot = PathSafety.RealPath(root);
        var blobs = HubCacheBlobs(realRoot);
        var result = new List<CompanionFile>();
        Walk(root, "", 0);
        result.Sort((a, b) => string.CompareOrdinal(a.RelativePath, b.RelativePath));
        return result;

        void Walk(string folder, string prefix, int depth)
        {
            IEnumerable<FileSystemInfo> entries;
            try
            {
                entries = new DirectoryInfo(folder).EnumerateFileSystemInfos().OrderBy(e => e.Name, StringComparer.Ordinal).ToList();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                warnings.Add($"could not list {folder}: {e.Message}; its files are not copied.");
                return;
            }
            foreach (var entry in entries)
            {
                var relative = prefix + entry.Name;
                if (entry.Name.StartsWith('.')) continue;
                if (entry is DirectoryInfo dir)
                {
                    if (dir.LinkTarget is not null)
                    {
                        warnings.Add($"'{relative}' is a linked folder; it is not copied.");
                        continue;
                    }
                    if (depth + 1 >= MaxDepth)
                    {
                        warnings.Add($"'{relative}' is nested more than {MaxDepth} levels deep; it is not copied.");
                        continue;
                    }
                    Walk(dir.FullName, relative + "/", depth + 1);
                    continue;
                }
                if (IsWeightFile(entry.Name)) continue;
                string source = entry.FullName;
                if (entry.LinkTarget is not null)
                {
                    var real = PathSafety.RealPath(entry.FullName);
                    bool inside = PathSafety.IsUnder(realRoot, real) || (blobs is not null && PathSafety.IsUnder(blobs, real));
                    if (!inside || !File.Exists(real))
                    {
                        warnings.Add($"'{relative}' links to {real}, outside the checkpoint folder; it is not copied.");
                        continue;
                    }
                    source = real;
                }
                if (result.Count >= MaxFiles)
                {
                    warnings.Add($"the folder holds more than {MaxFiles} other files; the rest are not copied.");
                    return;
                }
                long length;
                try { length = new FileInfo(source).Length; }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    warnings.Add($"could not read '{relative}': {e.Message}; it is not copied.");
                    continue;
                }
                result.Add(new CompanionFile(relative, source, length, updatesDType && relative == "config.json"));
            }
        }
    }

    /// <summary>For <c>.../models--org--name/snapshots/REV</c>, the repository's <c>blobs</c> folder; else null.</summary>
    private static string? HubCacheBlobs(string realRoot)
    {
        var snapshots = Path.GetDirectoryName(realRoot);
        if (snapshots is null || Path.GetFileName(snapshots) != "snapshots") return null;
        var repo = Path.GetDirectoryName(snapshots);
        if (repo is null) return null;
        var blobs = Path.Combine(repo, "blobs");
        return Directory.Exists(blobs) ? blobs : null;
    }
}
