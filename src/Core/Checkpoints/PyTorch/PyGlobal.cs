namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// A reference to an allowlisted Python global (a torch rebuild function, a storage type, a dtype, OrderedDict...).
/// It is only a name with a known meaning: nothing is imported, resolved or called.
/// </summary>
internal sealed class PyGlobal
{
    public PyGlobal(string fullName, TorchGlobalKind kind, DType? dtype = null, string? unsupported = null)
    {
        FullName = fullName;
        Kind = kind;
        DType = dtype;
        Unsupported = unsupported;
    }

    /// <summary>module.name, e.g. <c>torch._utils._rebuild_tensor_v2</c>.</summary>
    public string FullName { get; }

    public TorchGlobalKind Kind { get; }

    /// <summary>Element type of a dtype or typed storage class; null for untyped storage or an unrepresentable type.</summary>
    public DType? DType { get; }

    /// <summary>Why a dtype or storage class, though safe, cannot be represented (complex128, quantized...).</summary>
    public string? Unsupported { get; }

    public override string ToString() => FullName;
}
