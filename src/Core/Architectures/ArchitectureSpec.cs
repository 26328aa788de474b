using System.Text.RegularExpressions;
using BigModel.Checkpoints;
using BigModel.Errors;

namespace BigModel.Architectures;

/// <summary>A tensor a model of a given config has, before any checkpoint exists.</summary>
public sealed record TensorTemplate(string Name, long[] Shape);

/// <summary>
/// What BigModel knows about one model family: how its modules are named and ordered, which blocks must not be
/// split across devices (transformers' <c>_no_split_modules</c>), and which tensors a config implies.
/// </summary>
public sealed class ArchitectureSpec
{
    internal ArchitectureSpec(string family, string[] modelTypes, string basePrefix, bool defaultTie, bool isDecoder,
        string[] noSplitPatterns, string[] forwardOrder, Func<ModelConfig, string, IEnumerable<TensorTemplate>> baseTensors,
        Func<ModelConfig, string, IEnumerable<TensorTemplate>>? headTensors, string[] headArchitectures, string[] baseArchitectures,
        Func<IReadOnlyCollection<string>, bool> recognises)
    {
        Family = family;
        ModelTypes = modelTypes;
        BasePrefix = basePrefix;
        DefaultTieWordEmbeddings = defaultTie;
        IsDecoder = isDecoder;
        NoSplitPatterns = noSplitPatterns;
        _noSplit = noSplitPatterns.Select(p => new Regex(p, RegexOptions.CultureInvariant | RegexOptions.Compiled)).ToArray();
        ForwardOrder = forwardOrder;
        _baseTensors = baseTensors;
        _headTensors = headTensors;
        HeadArchitectures = headArchitectures;
        BaseArchitectures = baseArchitectures;
        _recognises = recognises;
    }

    private readonly Regex[] _noSplit;
    private readonly Func<ModelConfig, string, IEnumerable<TensorTemplate>> _baseTensors;
    private readonly Func<ModelConfig, string, IEnumerable<TensorTemplate>>? _headTensors;
    private readonly Func<IReadOnlyCollection<string>, bool> _recognises;

    /// <summary>Family name, e.g. "llama".</summary>
    public string Family { get; }

    /// <summary>config.json model_type values of this family.</summary>
    public IReadOnlyList<string> ModelTypes { get; }

    /// <summary>transformers' base_model_prefix: "model" in "model.layers.0".</summary>
    public string BasePrefix { get; }

    /// <summary>transformers' default for tie_word_embeddings in this family's config class.</summary>
    public bool DefaultTieWordEmbeddings { get; }

    /// <summary>True for decoder-only generators (they keep a KV cache).</summary>
    public bool IsDecoder { get; }

    /// <summary>Regular expressions (on module names) of blocks that must stay on one device.</summary>
    public IReadOnlyList<string> NoSplitPatterns { get; }

    /// <summary>First name segments (after the base prefix) in the order the forward pass visits them.</summary>
    public IReadOnlyList<string> ForwardOrder { get; }

    /// <summary>Architectures (config.json "architectures") with a head, whose tensors carry <see cref="BasePrefix"/>.</summary>
    public IReadOnlyList<string> HeadArchitectures { get; }

    /// <summary>Bare base-model architectures (no prefix, no head).</summary>
    public IReadOnlyList<string> BaseArchitectures { get; }

    /// <summary>Whether the model ties its output head to the input embedding.</summary>
    public bool TiesWordEmbeddings(ModelConfig? config) => config?.TieWordEmbeddingsValue ?? DefaultTieWordEmbeddings;

    /// <summary>True when <paramref name="moduleName"/> is a block transformers never splits across devices.</summary>
    public bool IsNoSplit(string moduleName)
    {
        foreach (var r in _noSplit)
            if (r.IsMatch(moduleName)) return true;
        return false;
    }

    /// <summary>
    /// Rank of a tensor or module name in forward order: the position of its first segment after the base prefix
    /// in <see cref="ForwardOrder"/>, or the end for names the family does not know.
    /// </summary>
    public int ForwardRank(string name)
    {
        var rest = name;
        if (BasePrefix.Length > 0 && rest.StartsWith(BasePrefix + ".", StringComparison.Ordinal)) rest = rest[(BasePrefix.Length + 1)..];
        int dot = rest.IndexOf('.');
        var first = dot < 0 ? rest : rest[..dot];
        for (int i = 0; i < ForwardOrder.Count; i++)
            if (ForwardOrder[i] == first) return i;
        return ForwardOrder.Count;
    }

    internal bool Recognises(IReadOnlyCollection<string> tensorNames) => _recognises(tensorNames);

    /// <summary>
    /// <see cref="TensorsFromConfig"/> with dtypes and sizes, for sizing or planning a model before it is downloaded:
    /// every tensor in the config's torch_dtype when that is a floating-point type, float32 otherwise (what
    /// from_pretrained loads without a torch_dtype), in this family's forward order. The tensors have no file.
    /// </summary>
    public IReadOnlyList<TensorInfo> SizedTensorsFromConfig(ModelConfig config)
    {
        var dtype = config.TorchDType is DType d && d.IsFloatingPoint() ? d : DType.F32;
        var tensors = new List<TensorInfo>();
        foreach (var t in TensorsFromConfig(config))
        {
            long elements = 1;
            foreach (var dim in t.Shape)
            {
                if (dim != 0 && elements > long.MaxValue / dim)
                    throw new BigModelException(BigModelErrorCode.ConfigInvalidValue,
                        $"tensor '{t.Name}' of shape {Checkpoints.Shapes.Format(t.Shape)} has more elements than 64 bits count.", config.Path);
                elements *= dim;
            }
            long bytes = dtype.ByteCount(elements)
                ?? throw new BigModelException(BigModelErrorCode.ConfigInvalidValue,
                    $"tensor '{t.Name}' of shape {Checkpoints.Shapes.Format(t.Shape)} has more bytes than 64 bits count.", config.Path);
            tensors.Add(new TensorInfo(t.Name, dtype, t.Shape, bytes, "", 0));
        }
        return TensorOrder.Sort(tensors, this);
    }

    /// <summary>
    /// The tensors a checkpoint of <paramref name="config"/> holds, as transformers' save_pretrained writes them
    /// (tied weights stored once, non-persistent buffers absent). The architecture in config.json decides whether a
    /// head and the base prefix are present; a bare base model is assumed when it names none.
    /// </summary>
    public IReadOnlyList<TensorTemplate> TensorsFromConfig(ModelConfig config)
    {
        var arch = config.Architecture;
        bool withHead = arch is not null && HeadArchitectures.Contains(arch);
        if (arch is not null && !withHead && !BaseArchitectures.Contains(arch))
            throw new BigModelException(BigModelErrorCode.UnsupportedArchitecture,
                $"architecture '{arch}' of family '{Family}' cannot be sized from config alone; supported: {string.Join(", ", BaseArchitectures.Concat(HeadArchitectures))}. Size the checkpoint itself instead.",
                config.Path);
        var prefix = withHead ? BasePrefix + "." : "";
        var list = new List<TensorTemplate>(_baseTensors(config, prefix));
        if (withHead && _headTensors is not null) list.AddRange(_headTensors(config, prefix));
        return list;
    }
}
