namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// A value an allowlisted constructor would build that BigModel never needs to look into (a torch.device, a
/// layout, a complex number): kept only so that the pickle's structure stays intact.
/// </summary>
internal sealed class PyOpaque
{
    public PyOpaque(string typeName) => TypeName = typeName;

    public string TypeName { get; }

    public override string ToString() => TypeName;
}
