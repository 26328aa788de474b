namespace BigModel.Checkpoints.PyTorch;

/// <summary>A Python list built by the restricted unpickler.</summary>
internal sealed class PyList
{
    public PyList() => Items = [];

    public PyList(List<object?> items) => Items = items;

    public List<object?> Items { get; }
}
