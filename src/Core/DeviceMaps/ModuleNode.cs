using BigModel.Checkpoints;

namespace BigModel.DeviceMaps;

/// <summary>
/// A module or a tensor of the module tree that tensor names imply (<c>a.b.c.weight</c> → modules a, a.b, a.b.c).
/// Sizes are Accelerate's compute_module_sizes: a tensor that shares storage with an earlier one (tied) counts once.
/// </summary>
public sealed class ModuleNode
{
    // Tensors have no parts and most modules have no buffers, so the lists are made on first use.
    private static readonly ModuleNode[] None = [];
    private List<ModuleNode>? _parameters;
    private List<ModuleNode>? _buffers;
    private List<ModuleNode>? _modules;

    internal ModuleNode(string name, ModuleNode? parent, bool isTensor, TensorInfo? tensor, bool isBuffer)
    {
        Name = name;
        Parent = parent;
        IsTensor = isTensor;
        Tensor = tensor;
        IsBuffer = isBuffer;
        Depth = parent is null ? 0 : parent.Depth + 1;
    }

    /// <summary>Full dotted name; "" for the root.</summary>
    public string Name { get; }

    /// <summary>The last segment of <see cref="Name"/>.</summary>
    public string LocalName => Name.LastIndexOf('.') is var i and >= 0 ? Name[(i + 1)..] : Name;

    public ModuleNode? Parent { get; }

    /// <summary>0 for the root, 1 for top-level modules and tensors.</summary>
    public int Depth { get; }

    /// <summary>True for a tensor (a parameter or a buffer), false for a module.</summary>
    public bool IsTensor { get; }

    /// <summary>The checkpoint tensor; null for modules and for tied tensors the checkpoint stores only once under another name.</summary>
    public TensorInfo? Tensor { get; }

    /// <summary>True for a buffer (running statistics, position ids, ...) rather than a parameter.</summary>
    public bool IsBuffer { get; }

    /// <summary>True for a tensor that shares its storage with an earlier tied tensor, and so adds no bytes.</summary>
    public bool IsTiedDuplicate { get; internal set; }

    /// <summary>Bytes of the tensor or of every tensor below the module (compute_module_sizes).</summary>
    public long Size { get; internal set; }

    /// <summary>Bytes of the buffers in this subtree (compute_module_total_buffer_size).</summary>
    public long BufferSize { get; internal set; }

    /// <summary>
    /// True when at least one counted tensor lies below, i.e. when compute_module_sizes has an entry for the name.
    /// A module holding only a tied duplicate (a tied lm_head) has none, and reads as size 0.
    /// </summary>
    public bool HasSize { get; internal set; }

    /// <summary>True when a no-split rule names this module: it is placed whole or not at all.</summary>
    public bool IsNoSplit => NoSplitRules.Count > 0;

    /// <summary>Indices of the no-split rules (see <see cref="ModuleTree.NoSplitRules"/>) matching this module.</summary>
    public IReadOnlyList<int> NoSplitRules { get; internal set; } = [];

    /// <summary>Direct parameters, in forward order.</summary>
    public IReadOnlyList<ModuleNode> Parameters => (IReadOnlyList<ModuleNode>?)_parameters ?? None;

    /// <summary>Direct buffers, in forward order.</summary>
    public IReadOnlyList<ModuleNode> Buffers => (IReadOnlyList<ModuleNode>?)_buffers ?? None;

    /// <summary>Direct submodules, in forward order.</summary>
    public IReadOnlyList<ModuleNode> Modules => (IReadOnlyList<ModuleNode>?)_modules ?? None;

    /// <summary>
    /// True when the planner may replace the module by its parts: a module with submodules that no rule keeps whole
    /// (Accelerate never splits a module made of tensors only).
    /// </summary>
    public bool CanSplit => !IsTensor && _modules is { Count: > 0 } && !IsNoSplit;

    /// <summary>A "layer" in get_max_layer_size's sense: a tensor, a module without submodules, or a no-split block.</summary>
    public bool IsLayer => IsTensor || _modules is not { Count: > 0 } || IsNoSplit;

    /// <summary>Position in the tree's pre-order; the subtree spans [PreOrder, SubtreeEnd).</summary>
    public int PreOrder { get; internal set; }

    internal int SubtreeEnd { get; set; }

    /// <summary>Number of nodes in this subtree, itself included.</summary>
    public int SubtreeCount => SubtreeEnd - PreOrder;

    /// <summary>True when <paramref name="other"/> is this node or lies below it.</summary>
    public bool Contains(ModuleNode other) => other.PreOrder >= PreOrder && other.PreOrder < SubtreeEnd;

    /// <summary>
    /// What the module becomes when split: its parameters, then its submodules (Accelerate's order), then its direct
    /// buffers. Accelerate leaves those buffers out, which leaves them without a device in the map; they are kept
    /// here so the map covers every tensor.
    /// </summary>
    public IEnumerable<ModuleNode> SplitParts() => Parameters.Concat(Modules).Concat(Buffers);

    internal int PartCount => Parameters.Count + Modules.Count + Buffers.Count;

    internal void AddTensor(ModuleNode tensor)
    {
        if (tensor.IsBuffer) (_buffers ??= []).Add(tensor);
        else (_parameters ??= []).Add(tensor);
    }

    internal void AddModule(ModuleNode module) => (_modules ??= []).Add(module);

    public override string ToString() => Name.Length == 0 ? "(model)" : Name;
}
