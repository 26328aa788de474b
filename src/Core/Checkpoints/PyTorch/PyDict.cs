namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// A Python dict (or OrderedDict / Counter) built by the restricted unpickler: insertion-ordered, and assigning an
/// existing key replaces its value in place, as Python does. Keys are compared by value for str, int and float,
/// and by identity otherwise, so no key comparison ever walks a nested value.
/// </summary>
internal sealed class PyDict
{
    public enum Flavor
    {
        Dict,
        OrderedDict,
        Counter,
    }

    private readonly List<object?> _keys = [];
    private readonly List<object?> _values = [];
    private readonly Dictionary<object, int> _index = new(PyKeyComparer.Instance);
    private int _noneKey = -1;

    public PyDict(Flavor kind) => Kind = kind;

    public Flavor Kind { get; }

    public int Count => _keys.Count;

    public string TypeName => Kind switch
    {
        Flavor.OrderedDict => "collections.OrderedDict",
        Flavor.Counter => "collections.Counter",
        _ => "dict",
    };

    public object? KeyAt(int i) => _keys[i];

    public object? ValueAt(int i) => _values[i];

    /// <summary>d[key] = value; false when the key is unhashable in Python (a list, dict or set).</summary>
    public bool Set(object? key, object? value)
    {
        if (key is PyList or PyDict or PySet) return false;
        int at;
        if (key is null)
        {
            if (_noneKey >= 0) { _values[_noneKey] = value; return true; }
            _noneKey = _keys.Count;
        }
        else if (_index.TryGetValue(key, out at))
        {
            _values[at] = value;
            return true;
        }
        else
        {
            _index[key] = _keys.Count;
        }
        _keys.Add(key);
        _values.Add(value);
        return true;
    }
}
