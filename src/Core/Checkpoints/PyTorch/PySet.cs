namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// A Python set or frozenset. A state dict never holds tensors in sets, so only the size is kept: items are counted
/// and dropped, which also avoids hashing arbitrary (possibly nested) values.
/// </summary>
internal sealed class PySet
{
    public PySet(bool frozen) => Frozen = frozen;

    public bool Frozen { get; }

    public long Count { get; set; }
}
