using BigModel.Errors;

namespace BigModel.DeviceMaps;

/// <summary>
/// Accelerate's clean_device_map: wherever every key below a module (more than one) names the same device, they
/// collapse into the module's own key; <c>{"a": 0, "b": 0}</c> becomes <c>{"": 0}</c>. Collapsing is decided top-down
/// on the original keys, as Accelerate recurses. The result keeps the order of first appearance.
/// </summary>
public static class DeviceMapCleaner
{
    private sealed class Trie(string name)
    {
        public readonly string Name = name;
        public readonly List<Trie> Children = [];
        public readonly Dictionary<string, Trie> ByName = new(StringComparer.Ordinal);
        public bool HasKey;
        public Device Value;
        public int Index = int.MaxValue;
        // Keys strictly below this node: how many, their first position, and their device when they all agree.
        public int Below;
        public int FirstBelow = int.MaxValue;
        public Device? Uniform;
        public bool Mixed;
    }

    public static IReadOnlyList<KeyValuePair<string, Device>> Clean(IEnumerable<KeyValuePair<string, Device>> map)
    {
        var root = new Trie("");
        int index = 0;
        foreach (var (key, device) in map)
        {
            var node = root;
            if (key.Length > 0)
            {
                if (key.Count(c => c == '.') >= ModuleTree.MaxDepth)
                    throw new BigModelException(BigModelErrorCode.DeviceMapInvalidModuleName, $"the module name has more than {ModuleTree.MaxDepth} segments.", tensor: key);
                int start = 0;
                while (true)
                {
                    int dot = key.IndexOf('.', start);
                    var segmentEnd = dot < 0 ? key.Length : dot;
                    var path = key[..segmentEnd];
                    var segment = key[start..segmentEnd];
                    if (!node.ByName.TryGetValue(segment, out var child))
                    {
                        child = new Trie(path);
                        node.ByName[segment] = child;
                        node.Children.Add(child);
                    }
                    node = child;
                    if (dot < 0) break;
                    start = dot + 1;
                }
            }
            node.HasKey = true;
            node.Value = device;
            node.Index = Math.Min(node.Index, index++);
        }
        Summarise(root);
        Collapse(root, isRoot: true);
        var result = new List<(int Index, string Key, Device Device)>();
        Collect(root, result);
        return result.OrderBy(r => r.Index).Select(r => new KeyValuePair<string, Device>(r.Key, r.Device)).ToList();
    }

    private static void Summarise(Trie node)
    {
        foreach (var child in node.Children)
        {
            Summarise(child);
            int count = child.Below + (child.HasKey ? 1 : 0);
            if (count == 0) continue;
            node.Below += count;
            node.FirstBelow = Math.Min(node.FirstBelow, Math.Min(child.FirstBelow, child.HasKey ? child.Index : int.MaxValue));
            Merge(node, child.Mixed, child.Uniform);
            if (child.HasKey) Merge(node, false, child.Value);
        }
    }

    private static void Merge(Trie node, bool mixed, Device? value)
    {
        if (node.Mixed) return;
        if (mixed)
        {
            node.Mixed = true;
            return;
        }
        if (value is not Device v) return;
        if (node.Uniform is null) node.Uniform = v;
        else if (node.Uniform != v) node.Mixed = true;
    }

    private static void Collapse(Trie node, bool isRoot)
    {
        // Accelerate matches keys by the prefix "name.", so a module's own key counts only at the root, whose prefix is "".
        int count = node.Below + (isRoot && node.HasKey ? 1 : 0);
        bool uniform = !node.Mixed && (node.Uniform is null || !isRoot || !node.HasKey || node.Uniform == node.Value);
        Device? value = node.Uniform ?? (isRoot && node.HasKey ? node.Value : null);
        if (count > 1 && uniform && value is Device v)
        {
            int first = Math.Min(node.FirstBelow, isRoot && node.HasKey ? node.Index : int.MaxValue);
            node.Children.Clear();
            node.HasKey = true;
            node.Value = v;
            node.Index = Math.Min(node.Index, first);
            return;
        }
        foreach (var child in node.Children) Collapse(child, isRoot: false);
    }

    private static void Collect(Trie node, List<(int, string, Device)> into)
    {
        if (node.HasKey) into.Add((node.Index, node.Name, node.Value));
        foreach (var child in node.Children) Collect(child, into);
    }
}
