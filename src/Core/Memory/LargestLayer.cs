using BigModel.Architectures;

namespace BigModel.Memory;

/// <summary>
/// Accelerate's get_max_layer_size over a module tree derived from tensor names: walk from the root; a module with
/// no child modules, or one the architecture never splits, is a candidate; any other module is replaced by its
/// children (its own direct parameters then drop out, as in Accelerate). Parameters at the root are candidates too.
/// </summary>
internal static class LargestLayer
{
    public static (string Name, long Bytes) Find(IReadOnlyList<(string Name, long Bytes)> tensors, ArchitectureSpec? spec)
    {
        var sizes = new Dictionary<string, long>(StringComparer.Ordinal);
        var children = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        var rootParams = new List<string>();
        var order = new TensorOrder(spec);
        foreach (var (name, bytes) in tensors)
        {
            int dot = name.LastIndexOf('.');
            if (dot < 0)
            {
                rootParams.Add(name);
                sizes[name] = bytes;
                continue;
            }
            // Every proper prefix ending at a dot is a module.
            string parent = "";
            for (int i = name.IndexOf('.'); i >= 0; i = name.IndexOf('.', i + 1))
            {
                var module = name[..i];
                sizes[module] = sizes.GetValueOrDefault(module) + bytes;
                if (!children.TryGetValue(parent, out var set)) children[parent] = set = new HashSet<string>(StringComparer.Ordinal);
                set.Add(module);
                parent = module;
            }
        }
        var work = new LinkedList<string>(rootParams.Concat(children.GetValueOrDefault("") ?? Enumerable.Empty<string>()).OrderBy(n => n, order));
        string bestName = "";
        long best = -1;
        while (work.First is { } node)
        {
            work.RemoveFirst();
            var name = node.Value;
            var kids = children.GetValueOrDefault(name);
            if (kids is null || kids.Count == 0 || spec?.IsNoSplit(name) == true)
            {
                long size = sizes[name];
                if (size > best)
                {
                    best = size;
                    bestName = name;
                }
                continue;
            }
            foreach (var kid in kids.OrderBy(n => n, order).Reverse()) work.AddFirst(kid);
        }
        return (bestName, Math.Max(best, 0));
    }
}
