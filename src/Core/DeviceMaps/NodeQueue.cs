using System.Collections;

namespace BigModel.DeviceMaps;

/// <summary>
/// Accelerate's modules_to_treat list: popped from the front, refilled at the front with a split module's parts,
/// and searched for the entry holding a tied tensor. Entries are disjoint subtrees, so at most one holds any node.
/// </summary>
internal sealed class NodeQueue : IEnumerable<ModuleNode>
{
    private readonly LinkedList<ModuleNode> _list = new();
    private readonly Dictionary<ModuleNode, LinkedListNode<ModuleNode>> _index = new(ReferenceEqualityComparer.Instance);

    public NodeQueue(IEnumerable<ModuleNode> nodes)
    {
        foreach (var n in nodes) _index.Add(n, _list.AddLast(n));
    }

    public int Count => _list.Count;

    public ModuleNode PopFront()
    {
        var first = _list.First!;
        _list.RemoveFirst();
        _index.Remove(first.Value);
        return first.Value;
    }

    public void PushFront(ModuleNode node) => _index.Add(node, _list.AddFirst(node));

    /// <summary>Puts <paramref name="nodes"/> at the front, keeping their order.</summary>
    public void PushFrontRange(IEnumerable<ModuleNode> nodes)
    {
        var anchor = _list.First;
        foreach (var n in nodes)
            _index.Add(n, anchor is null ? _list.AddLast(n) : _list.AddBefore(anchor, n));
    }

    public bool Contains(ModuleNode node) => _index.ContainsKey(node);

    public bool Remove(ModuleNode node)
    {
        if (!_index.Remove(node, out var link)) return false;
        _list.Remove(link);
        return true;
    }

    /// <summary>Replaces <paramref name="node"/> by <paramref name="parts"/> at its position.</summary>
    public void ReplaceWith(ModuleNode node, IEnumerable<ModuleNode> parts)
    {
        var link = _index[node];
        foreach (var p in parts) _index.Add(p, _list.AddBefore(link, p));
        _index.Remove(node);
        _list.Remove(link);
    }

    /// <summary>
    /// The entry holding <paramref name="tensor"/>: the entry that is its ancestor (Accelerate's
    /// <c>tied_param.startswith(name + ".")</c>), else the tensor itself when it is an entry; null when it was placed already.
    /// </summary>
    public ModuleNode? EntryHolding(ModuleNode tensor)
    {
        for (var a = tensor.Parent; a is not null; a = a.Parent)
            if (_index.ContainsKey(a)) return a;
        return _index.ContainsKey(tensor) ? tensor : null;
    }

    public NodeQueue Clone() => new(_list);

    public IEnumerator<ModuleNode> GetEnumerator() => _list.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
