using BigModel.Architectures;
using BigModel.Checkpoints.PyTorch;
using BigModel.Errors;
using BigModel.IO;

namespace BigModel.Checkpoints;

/// <summary>An inconsistency that does not stop a checkpoint from loading.</summary>
public sealed record CheckpointWarning(BigModelErrorCode Code, string Message, string? Tensor);

/// <summary>
/// A model checkpoint, described from its headers alone: which files hold which tensors, their dtypes, shapes and
/// byte ranges, and the model config beside them. Opening one reads no tensor data.
/// </summary>
public sealed class Checkpoint
{
    /// <summary>File names transformers looks for in a model folder, in its order of preference.</summary>
    public static readonly IReadOnlyList<string> StandardFileNames =
        ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"];

    private readonly Dictionary<string, TensorInfo> _byName;

    private Checkpoint(string path, string directory, CheckpointFormat format, string? indexPath, IReadOnlyList<string> files,
        IReadOnlyList<TensorInfo> tensors, ModelConfig? config, IReadOnlyDictionary<string, string> metadata, IReadOnlyList<CheckpointWarning> warnings, long? declaredTotalSize)
    {
        Path = path;
        Directory = directory;
        Format = format;
        IndexPath = indexPath;
        Files = files;
        Config = config;
        Metadata = metadata;
        Warnings = warnings;
        DeclaredTotalSize = declaredTotalSize;
        Architecture = ArchitectureCatalog.Detect(config, tensors.Select(t => t.Name).ToList());
        Tensors = TensorOrder.Sort(tensors, Architecture);
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        ParameterCount = Total(tensors, t => t.ElementCount, "elements", path);
        ByteLength = Total(tensors, t => t.ByteLength, "bytes", path);
        DTypes = tensors.Select(t => t.DType).Distinct().Order().ToList();
    }

    /// <summary>The path the checkpoint was opened from (file or folder), made absolute.</summary>
    public string Path { get; }

    /// <summary>The folder holding the weights, config and tokenizer files.</summary>
    public string Directory { get; }

    public CheckpointFormat Format { get; }

    /// <summary>The index file of a sharded checkpoint.</summary>
    public string? IndexPath { get; }

    /// <summary>Weight files, in shard order.</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>Tensors in the model's forward order (natural order refined by architecture knowledge).</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    /// <summary>config.json of the folder, when present.</summary>
    public ModelConfig? Config { get; }

    /// <summary>The model family, from config.json or recognised tensor names; null when unknown.</summary>
    public ArchitectureSpec? Architecture { get; }

    /// <summary>safetensors <c>__metadata__</c> of the (first) shard.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Inconsistencies that do not stop loading (Test-Checkpoint reports them).</summary>
    public IReadOnlyList<CheckpointWarning> Warnings { get; }

    /// <summary>metadata.total_size of the index, when given.</summary>
    public long? DeclaredTotalSize { get; }

    /// <summary>Sum of all tensors' element counts.</summary>
    public long ParameterCount { get; }

    /// <summary>Sum of all tensors' data sizes.</summary>
    public long ByteLength { get; }

    public IReadOnlyList<DType> DTypes { get; }

    /// <summary>Total size of the weight files on disk (headers included), measured now.</summary>
    public long FileBytes
    {
        get
        {
            long total = 0;
            foreach (var file in Files)
            {
                long length = FileErrors.Guard(file, () => new FileInfo(file).Length, "the weight file disappeared.");
                total = Add(total, length, "the weight files' sizes", Path);
            }
            return total;
        }
    }

    private static long Total(IReadOnlyList<TensorInfo> tensors, Func<TensorInfo, long> size, string what, string path)
    {
        long total = 0;
        foreach (var t in tensors) total = Add(total, size(t), $"the tensors' {what}", path);
        return total;
    }

    // Views in PyTorch archives may claim far more elements than their storage holds, so totals are checked.
    private static long Add(long total, long value, string what, string path) =>
        value > long.MaxValue - total
            ? throw new BigModelException(BigModelErrorCode.CheckpointTooLarge, $"{what} add up to more than {long.MaxValue}; no real checkpoint is that large.", path)
            : total + value;

    public TensorInfo? Find(string name) => _byName.GetValueOrDefault(name);

    public TensorInfo this[string name] => _byName.TryGetValue(name, out var t)
        ? t
        : throw new BigModelException(BigModelErrorCode.IndexTensorMissingFromShard, "no such tensor in the checkpoint.", Path, tensor: name);

    /// <summary>
    /// Opens a checkpoint from a weight file, an index file, or a folder (resolved the way transformers does:
    /// model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json).
    /// </summary>
    public static Checkpoint Open(string path, SafetensorsLimits? limits = null)
    {
        var full = System.IO.Path.GetFullPath(path);
        var (kind, file) = Locate(full);
        var directory = System.IO.Path.GetDirectoryName(file)!;
        var config = LoadConfig(directory);
        var warnings = new List<CheckpointWarning>();
        switch (kind)
        {
            case CheckpointFormat.Safetensors:
            {
                var header = SafetensorsHeader.Read(file, limits);
                return new Checkpoint(full, directory, kind, null, [file], header.Tensors, config,
                    header.Metadata ?? new Dictionary<string, string>(), warnings, null);
            }
            case CheckpointFormat.PyTorch:
            {
                var tensors = PyTorchCheckpointReader.ReadTensors(file);
                return new Checkpoint(full, directory, kind, null, [file], tensors, config, new Dictionary<string, string>(), warnings, null);
            }
            default:
            {
                var index = ShardIndex.Read(file);
                var shards = index.Shards;
                var isSafetensors = shards.All(s => s.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase));
                var format = isSafetensors ? CheckpointFormat.ShardedSafetensors : CheckpointFormat.ShardedPyTorch;
                var tensorsByShard = new Dictionary<string, Dictionary<string, TensorInfo>>(StringComparer.Ordinal);
                var files = new List<string>(shards.Count);
                IReadOnlyDictionary<string, string>? metadata = null;
                var folder = new ContainedFolder(directory);
                foreach (var shard in shards)
                {
                    var shardPath = folder.Resolve(shard, file);
                    if (!File.Exists(shardPath))
                        throw new BigModelException(BigModelErrorCode.IndexShardMissing, $"shard '{shard}' named in the weight_map does not exist.", file);
                    files.Add(shardPath);
                    IReadOnlyList<TensorInfo> shardTensors;
                    if (isSafetensors)
                    {
                        var header = SafetensorsHeader.Read(shardPath, limits);
                        metadata ??= header.Metadata;
                        shardTensors = header.Tensors;
                    }
                    else
                    {
                        shardTensors = PyTorchCheckpointReader.ReadTensors(shardPath);
                    }
                    tensorsByShard[shard] = shardTensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
                }
                var tensors = new List<TensorInfo>(index.WeightMap.Count);
                foreach (var (name, shard) in index.WeightMap)
                {
                    if (!tensorsByShard[shard].Remove(name, out var tensor))
                        throw new BigModelException(BigModelErrorCode.IndexTensorMissingFromShard, $"the weight_map places it in '{shard}', which does not contain it.", file, tensor: name);
                    tensors.Add(tensor);
                }
                foreach (var (shard, rest) in tensorsByShard)
                    foreach (var name in rest.Keys.Order(NaturalOrder.Instance))
                        warnings.Add(new(BigModelErrorCode.IndexTensorNotListed, $"stored in '{shard}' but the weight_map does not list it; it is ignored.", name));
                long sum = Total(tensors, t => t.ByteLength, "bytes", file);
                if (index.TotalSize is long declared && declared != sum)
                    warnings.Add(new(BigModelErrorCode.IndexTotalSizeMismatch, $"metadata.total_size is {declared} but the listed tensors hold {sum} bytes.", null));
                return new Checkpoint(full, directory, format, file, files, tensors, config,
                    metadata ?? new Dictionary<string, string>(), warnings, index.TotalSize);
            }
        }
    }

    private static ModelConfig? LoadConfig(string directory)
    {
        var configPath = System.IO.Path.Combine(directory, "config.json");
        return File.Exists(configPath) ? ModelConfig.Load(configPath) : null;
    }

    /// <summary>Decides what kind of checkpoint <paramref name="full"/> is and which file describes it.</summary>
    internal static (CheckpointFormat Kind, string File) Locate(string full)
    {
        if (System.IO.Directory.Exists(full))
        {
            foreach (var name in StandardFileNames)
            {
                var candidate = System.IO.Path.Combine(full, name);
                if (File.Exists(candidate)) return Locate(candidate);
            }
            // Non-standard names (diffusion_pytorch_model.safetensors, adapter files...): accept a single unambiguous one.
            var indexes = FileErrors.Guard(full, () => System.IO.Directory.GetFiles(full, "*.safetensors.index.json"));
            if (indexes.Length == 1) return Locate(indexes[0]);
            var singles = FileErrors.Guard(full, () => System.IO.Directory.GetFiles(full, "*.safetensors"));
            if (indexes.Length == 0 && singles.Length == 1) return Locate(singles[0]);
            if (indexes.Length + singles.Length > 1)
                throw new BigModelException(BigModelErrorCode.AmbiguousCheckpoint,
                    $"the folder holds several candidate weight files ({string.Join(", ", indexes.Concat(singles).Select(System.IO.Path.GetFileName).Take(6))}); pass the file or index to use.", full);
            throw new BigModelException(BigModelErrorCode.NotACheckpoint,
                $"no weights found; expected one of {string.Join(", ", StandardFileNames)} (or a single *.safetensors).", full);
        }
        if (!File.Exists(full))
            throw new BigModelException(BigModelErrorCode.PathNotFound, "no such file or folder.", full);
        var fileName = System.IO.Path.GetFileName(full);
        if (fileName.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase))
            return (CheckpointFormat.ShardedSafetensors, full);
        if (fileName.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            return (CheckpointFormat.Safetensors, full);
        if (fileName.EndsWith(".bin", StringComparison.OrdinalIgnoreCase) || fileName.EndsWith(".pt", StringComparison.OrdinalIgnoreCase)
            || fileName.EndsWith(".pth", StringComparison.OrdinalIgnoreCase))
            return (CheckpointFormat.PyTorch, full);
        if (fileName.Equals("config.json", StringComparison.OrdinalIgnoreCase))
            return Locate(System.IO.Path.GetDirectoryName(full)!);
        throw new BigModelException(BigModelErrorCode.UnsupportedFormat,
            "not a recognised checkpoint file; expected *.safetensors, *.index.json, *.bin, *.pt or *.pth.", full);
    }
}
