using BigModel.Checkpoints;
using BigModel.Errors;

namespace BigModel.DeviceMaps;

/// <summary>How <see cref="ModuleTree.Build"/> sizes and groups the tensors.</summary>
public sealed class ModuleTreeOptions
{
    /// <summary>Target dtype: float tensors wider than it are counted at its width (Accelerate's dtype argument).</summary>
    public DType? DType { get; init; }

    /// <summary>Per-tensor dtypes overriding <see cref="DType"/> (Accelerate's special_dtypes), counted as given.</summary>
    public IReadOnlyDictionary<string, DType>? SpecialDTypes { get; init; }

    /// <summary>Blocks that must stay whole.</summary>
    public IReadOnlyList<NoSplitRule> NoSplit { get; init; } = [];

    /// <summary>Groups of tensor names sharing one storage. Names the checkpoint lacks are added as tensors of no size.</summary>
    public IReadOnlyList<IReadOnlyList<string>> TiedParameters { get; init; } = [];

    /// <summary>Tells buffers from parameters; <see cref="ModuleTree.IsWellKnownBuffer"/> when null.</summary>
    public Func<string, bool>? IsBuffer { get; init; }
}

/// <summary>
/// The module tree a list of tensors implies, ordered as the tensors are given (forward order for a
/// <see cref="Checkpoint"/>), with Accelerate's per-module sizes, no-split marks and tied groups.
/// </summary>
public sealed class ModuleTree
{
    /// <summary>Segments beyond this are not a real module path; the limit keeps every walk over the tree shallow.</summary>
    public const int MaxDepth = 256;

    /// <summary>Leaf names that are buffers in the modules checkpoints come from (batch norm statistics, cached ids and frequencies).</summary>
    public static readonly IReadOnlySet<string> WellKnownBufferNames = new HashSet<string>(StringComparer.Ordinal)
    {
        "running_mean", "running_var", "num_batches_tracked", "position_ids", "token_type_ids", "inv_freq", "masked_bias",
    };

    private readonly Dictionary<string, ModuleNode> _byName;

    private ModuleTree(ModuleNode root, Dictionary<string, ModuleNode> byName, ModuleNode[] preOrder,
        IReadOnlyList<IReadOnlyList<ModuleNode>> tiedGroups, IReadOnlyList<NoSplitRule> rules, IReadOnlyList<string> notes)
    {
        Root = root;
        _byName = byName;
        Nodes = preOrder;
        TiedGroups = tiedGroups;
        NoSplitRules = rules;
        Notes = notes;
    }

    /// <summary>The model itself (name "").</summary>
    public ModuleNode Root { get; }

    /// <summary>Every node in pre-order (module, its parameters, its buffers, its submodules), the root first.</summary>
    public IReadOnlyList<ModuleNode> Nodes { get; }

    /// <summary>Tied tensors, each group sorted by name as Accelerate's find_tied_parameters sorts them.</summary>
    public IReadOnlyList<IReadOnlyList<ModuleNode>> TiedGroups { get; }

    public IReadOnlyList<NoSplitRule> NoSplitRules { get; }

    /// <summary>What building assumed (tied tensors added without data, ...).</summary>
    public IReadOnlyList<string> Notes { get; }

    /// <summary>Total bytes (compute_module_sizes[""]).</summary>
    public long TotalBytes => Root.Size;

    public ModuleNode? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>
    /// True for tensors whose last segment names a buffer in the usual modules; GPT-2's attention mask
    /// (<c>attn.bias</c>, <c>attn.masked_bias</c>) is recognised by its module name.
    /// </summary>
    public static bool IsWellKnownBuffer(string tensorName)
    {
        var name = tensorName.AsSpan();
        int dot = name.LastIndexOf('.');
        var leaf = dot < 0 ? name : name[(dot + 1)..];
        if (BufferLookup.Contains(leaf)) return true;
        return leaf.SequenceEqual("bias") && (name.SequenceEqual("attn.bias") || name.EndsWith(".attn.bias", StringComparison.Ordinal))
            && !name.Contains(".c_attn.", StringComparison.Ordinal);
    }

    private static readonly HashSet<string>.AlternateLookup<ReadOnlySpan<char>> BufferLookup =
        ((HashSet<string>)WellKnownBufferNames).GetAlternateLookup<ReadOnlySpan<char>>();

    /// <summary>Builds the tree from <paramref name="tensors"/>, whose order becomes the order of modules and tensors.</summary>
    public static ModuleTree Build(IReadOnlyList<TensorInfo> tensors, ModuleTreeOptions? options = null)
    {
        options ??= new ModuleTreeOptions();
        var isBuffer = options.IsBuffer ?? IsWellKnownBuffer;
        var root = new ModuleNode("", null, false, null, false);
        var byName = new Dictionary<string, ModuleNode>(tensors.Count * 3, StringComparer.Ordinal) { [""] = root };
        var notes = new List<string>();

        foreach (var tensor in tensors)
        {
            ValidateName(tensor.Name);
            AddTensor(byName, tensor.Name, tensor, isBuffer(tensor.Name));
        }

        var groups = ResolveTiedGroups(options.TiedParameters, byName, isBuffer, notes);
        var preOrder = NumberPreOrder(root, byName.Count);
        var tied = OrderTiedGroups(groups);
        MarkTiedDuplicates(tied);
        ComputeSizes(preOrder, options.DType, options.SpecialDTypes);
        MarkNoSplit(preOrder, options.NoSplit);
        return new ModuleTree(root, byName, preOrder, tied, options.NoSplit, notes);
    }

    /// <summary>
    /// Accelerate's compute_module_sizes: every module and counted tensor name ("" for the whole model) with its
    /// bytes, in the order Accelerate fills the dictionary (parameters in pre-order, then buffers). Modules holding
    /// only tied duplicates have no entry, as in Accelerate, where reading them yields 0.
    /// </summary>
    public IReadOnlyDictionary<string, long> ComputeModuleSizes(bool buffersOnly = false)
    {
        var sizes = new OrderedDictionary<string, long>(Nodes.Count, StringComparer.Ordinal);
        foreach (var node in SizedNodes(buffersOnly)) sizes.Add(node.Name, buffersOnly ? node.BufferSize : node.Size);
        return sizes;
    }

    /// <summary>
    /// The nodes <see cref="ComputeModuleSizes"/> has keys for, in its order: Accelerate walks the parameters in
    /// pre-order, then the buffers, and each tensor enters the dictionary after the modules above it.
    /// </summary>
    public IReadOnlyList<ModuleNode> SizedNodes(bool buffersOnly = false)
    {
        var seen = new bool[Nodes.Count];
        var order = new List<ModuleNode>(Nodes.Count);
        var chain = new List<ModuleNode>(16);
        void Add(ModuleNode tensor)
        {
            chain.Clear();
            for (var n = tensor; n is not null && !seen[n.PreOrder]; n = n.Parent) chain.Add(n);
            for (int i = chain.Count - 1; i >= 0; i--)
            {
                seen[chain[i].PreOrder] = true;
                order.Add(chain[i]);
            }
        }
        if (!buffersOnly)
            foreach (var node in Nodes)
                if (node.IsTensor && !node.IsBuffer && Counts(node)) Add(node);
        foreach (var node in Nodes)
            if (node.IsTensor && node.IsBuffer && Counts(node)) Add(node);
        return order;
    }

    private static bool Counts(ModuleNode tensor) => tensor.Tensor is not null && !tensor.IsTiedDuplicate;

    /// <summary>
    /// Bytes of one tensor under Accelerate's dtype rules: integer and bool tensors keep their size, every other
    /// type (float, complex) shrinks to the target when wider, and a special dtype sets the size outright. Bool
    /// counts its stored byte per element, where Accelerate's dtype_byte_size counts one bit.
    /// </summary>
    public static long TensorBytes(TensorInfo tensor, DType? dtype, DType? special = null)
    {
        if (special is DType sp) return Bytes(tensor.ElementCount, sp.Bits());
        if (dtype is not DType target || IsIntegral(tensor.DType)) return tensor.ByteLength;
        int bits = Math.Min(target.Bits(), tensor.DType.Bits());
        return bits == tensor.DType.Bits() ? tensor.ByteLength : Bytes(tensor.ElementCount, bits);
    }

    /// <summary>The types set_module_tensor_to_device never converts (torch.int*, torch.uint*, torch.bool).</summary>
    private static bool IsIntegral(DType dtype) => dtype is DType.BOOL or DType.U8 or DType.I8 or DType.I16 or DType.U16
        or DType.I32 or DType.U32 or DType.I64 or DType.U64;

    private static long Bytes(long elements, int bits)
    {
        var total = ((Int128)elements * bits + 7) / 8;
        return total > long.MaxValue ? long.MaxValue : (long)total;
    }

    private static void ValidateName(string name)
    {
        if (name.Length == 0 || name[0] == '.' || name[^1] == '.' || name.Contains("..", StringComparison.Ordinal))
            throw new BigModelException(BigModelErrorCode.DeviceMapInvalidModuleName,
                "a tensor name must be dot-separated non-empty segments to form a module path.", tensor: name);
        int depth = 1;
        foreach (var c in name)
            if (c == '.' && ++depth > MaxDepth)
                throw new BigModelException(BigModelErrorCode.DeviceMapInvalidModuleName,
                    $"the name has more than {MaxDepth} segments.", tensor: name);
    }

    private static ModuleNode AddTensor(Dictionary<string, ModuleNode> byName, string name, TensorInfo? tensor, bool isBuffer)
    {
        if (byName.TryGetValue(name, out var existing))
            throw new BigModelException(BigModelErrorCode.DeviceMapModuleConflict, existing.IsTensor
                ? "the tensor is given twice."
                : "the name is both a tensor and the module of other tensors.", tensor: name);
        int dot = name.LastIndexOf('.');
        var parent = dot < 0 ? byName[""] : GetOrCreateModule(byName, name, dot);
        var node = new ModuleNode(name, parent, true, tensor, isBuffer);
        parent.AddTensor(node);
        byName[name] = node;
        return node;
    }

    /// <summary>The module named by the first <paramref name="length"/> characters of <paramref name="tensorName"/>, created with its ancestors when new.</summary>
    private static ModuleNode GetOrCreateModule(Dictionary<string, ModuleNode> byName, string tensorName, int length)
    {
        // Siblings share their module, so looking it up by span avoids a string per tensor.
        var lookup = byName.GetAlternateLookup<ReadOnlySpan<char>>();
        if (lookup.TryGetValue(tensorName.AsSpan(0, length), out var existing))
        {
            if (existing.IsTensor)
                throw new BigModelException(BigModelErrorCode.DeviceMapModuleConflict,
                    $"'{existing.Name}' is a tensor, so it cannot also be the module of '{tensorName}'.", tensor: tensorName);
            return existing;
        }
        var path = tensorName[..length];
        int dot = path.LastIndexOf('.');
        var parent = dot < 0 ? byName[""] : GetOrCreateModule(byName, tensorName, dot);
        var module = new ModuleNode(path, parent, false, null, false);
        parent.AddModule(module);
        byName[path] = module;
        return module;
    }

    private static List<List<ModuleNode>> ResolveTiedGroups(IReadOnlyList<IReadOnlyList<string>> groups,
        Dictionary<string, ModuleNode> byName, Func<string, bool> isBuffer, List<string> notes)
    {
        // Union-find over names, so groups that share a tensor become one group, as one storage ties them all.
        var parent = new Dictionary<string, string>(StringComparer.Ordinal);
        string FindRoot(string x)
        {
            while (parent[x] != x) x = parent[x] = parent[parent[x]];
            return x;
        }
        foreach (var group in groups)
        {
            var names = group.Where(n => n is not null).Select(n => n.Trim()).Distinct(StringComparer.Ordinal).ToList();
            if (names.Count < 2)
                throw new BigModelException(BigModelErrorCode.DeviceMapTiedParameterInvalid,
                    $"a group of tied parameters needs at least two tensor names; got [{string.Join(", ", names)}].");
            foreach (var n in names)
            {
                ValidateName(n);
                parent.TryAdd(n, n);
            }
            for (int i = 1; i < names.Count; i++)
            {
                var a = FindRoot(names[0]);
                var b = FindRoot(names[i]);
                if (a != b) parent[b] = a;
            }
        }
        var merged = parent.Keys.GroupBy(FindRoot, StringComparer.Ordinal).Select(g => g.ToList()).ToList();
        var result = new List<List<ModuleNode>>(merged.Count);
        foreach (var names in merged)
        {
            var present = names.Where(byName.ContainsKey).ToList();
            foreach (var n in present)
                if (!byName[n].IsTensor)
                    throw new BigModelException(BigModelErrorCode.DeviceMapTiedParameterInvalid,
                        $"'{n}' is a module, not a tensor; tie its parameters by name (e.g. '{n}.weight').");
            var withData = present.Where(n => byName[n].Tensor is not null).ToList();
            if (withData.Count == 0)
                throw new BigModelException(BigModelErrorCode.DeviceMapTiedParameterInvalid,
                    $"none of the tied tensors [{string.Join(", ", names.Order(StringComparer.Ordinal))}] is in the checkpoint.");
            var nodes = new List<ModuleNode>(names.Count);
            foreach (var n in names.Order(StringComparer.Ordinal))
            {
                if (byName.TryGetValue(n, out var node))
                {
                    nodes.Add(node);
                    continue;
                }
                // Checkpoints store a tied tensor once; the model still has the other name, and its module must go where the storage goes.
                nodes.Add(AddTensor(byName, n, null, isBuffer(n)));
                notes.Add($"'{n}' has no tensor of its own in the checkpoint: it shares the storage of '{withData[0]}'.");
            }
            result.Add(nodes);
        }
        return result;
    }

    private static ModuleNode[] NumberPreOrder(ModuleNode root, int count)
    {
        var order = new ModuleNode[count];
        int next = 0;
        // Iterative walk: each frame is (node, index of the next part to visit).
        var stack = new Stack<(ModuleNode Node, int Part)>();
        root.PreOrder = next;
        order[next++] = root;
        stack.Push((root, 0));
        while (stack.Count > 0)
        {
            var (node, part) = stack.Pop();
            var parts = node.IsTensor ? 0 : node.Parameters.Count + node.Buffers.Count + node.Modules.Count;
            if (part >= parts)
            {
                node.SubtreeEnd = next;
                continue;
            }
            stack.Push((node, part + 1));
            var child = part < node.Parameters.Count ? node.Parameters[part]
                : part < node.Parameters.Count + node.Buffers.Count ? node.Buffers[part - node.Parameters.Count]
                : node.Modules[part - node.Parameters.Count - node.Buffers.Count];
            child.PreOrder = next;
            order[next++] = child;
            if (child.IsTensor) child.SubtreeEnd = next;
            else stack.Push((child, 0));
        }
        return order;
    }

    private static List<IReadOnlyList<ModuleNode>> OrderTiedGroups(List<List<ModuleNode>> groups) =>
        groups.OrderBy(g => g.Min(n => n.PreOrder)).Select(g => (IReadOnlyList<ModuleNode>)g).ToList();

    /// <summary>
    /// torch's named_parameters reports a shared parameter once, under its first name in module order; the other
    /// names add nothing to compute_module_sizes.
    /// </summary>
    private static void MarkTiedDuplicates(List<IReadOnlyList<ModuleNode>> groups)
    {
        foreach (var group in groups)
        {
            var owner = group.Where(n => n.Tensor is not null).OrderBy(n => n.IsBuffer).ThenBy(n => n.PreOrder).First();
            foreach (var n in group)
                if (n != owner) n.IsTiedDuplicate = true;
        }
    }

    private static void ComputeSizes(ModuleNode[] nodes, DType? dtype, IReadOnlyDictionary<string, DType>? special)
    {
        foreach (var node in nodes)
        {
            if (!node.IsTensor || !Counts(node)) continue;
            DType? sp = special is not null && special.TryGetValue(node.Name, out var d) ? d : null;
            long size = TensorBytes(node.Tensor!, dtype, sp);
            for (var n = node; n is not null; n = n.Parent)
            {
                n.Size = MaxMemory.SaturatingAdd(n.Size, size);
                n.HasSize = true;
                if (node.IsBuffer) n.BufferSize = MaxMemory.SaturatingAdd(n.BufferSize, size);
            }
        }
    }

    private static void MarkNoSplit(ModuleNode[] nodes, IReadOnlyList<NoSplitRule> rules)
    {
        if (rules.Count == 0) return;
        var matched = new List<int>(rules.Count);
        foreach (var node in nodes)
        {
            if (node.IsTensor || node.Parent is null) continue;
            matched.Clear();
            for (int r = 0; r < rules.Count; r++)
                if (rules[r].IsMatch(node.Name)) matched.Add(r);
            if (matched.Count > 0) node.NoSplitRules = matched.ToArray();
        }
    }
}
