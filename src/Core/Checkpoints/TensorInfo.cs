namespace BigModel.Checkpoints;

/// <summary>
/// One tensor of a checkpoint, described without reading its data: where its bytes start in which file and
/// how they are laid out.
/// </summary>
public sealed class TensorInfo
{
    public TensorInfo(string name, DType dtype, long[] shape, long byteLength, string file, long dataOffset, long[]? strides = null)
    {
        Name = name;
        DType = dtype;
        Shape = shape;
        ByteLength = byteLength;
        File = file;
        DataOffset = dataOffset;
        Strides = strides;
        long n = 1;
        foreach (var d in shape) n = checked(n * d);
        ElementCount = n;
    }

    /// <summary>The tensor's name, e.g. <c>model.layers.0.mlp.up_proj.weight</c>.</summary>
    public string Name { get; }

    public DType DType { get; }

    /// <summary>Dimensions, outermost first.</summary>
    public IReadOnlyList<long> Shape { get; }

    /// <summary>Number of elements (the product of <see cref="Shape"/>; 1 for a scalar).</summary>
    public long ElementCount { get; }

    /// <summary>Size of the tensor's data in bytes.</summary>
    public long ByteLength { get; }

    /// <summary>Full path of the file holding the data.</summary>
    public string File { get; }

    /// <summary>Absolute byte offset of the first element within <see cref="File"/>.</summary>
    public long DataOffset { get; }

    /// <summary>
    /// Element strides when the data is not dense row-major (PyTorch pickles can store views); null when it is.
    /// </summary>
    public IReadOnlyList<long>? Strides { get; }

    /// <summary>True when the bytes are dense row-major, i.e. one contiguous run of <see cref="ByteLength"/> bytes.</summary>
    public bool IsContiguous => Strides is null;

    /// <summary>Shape as Python prints it: <c>[384, 768]</c>.</summary>
    public string ShapeText => Shapes.Format(Shape);

    /// <summary>Name of the module owning the tensor: everything before the last dot ("" at the root).</summary>
    public string Module => Name.LastIndexOf('.') is var i and >= 0 ? Name[..i] : "";

    public override string ToString() => $"{Name} {DType} {ShapeText}";
}
