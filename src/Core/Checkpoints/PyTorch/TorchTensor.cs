namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// A tensor as a rebuild function would create it: a view (offset, sizes, strides, in elements) of a storage.
/// The view is checked against its storage when the state dict is flattened, where the tensor's name is known.
/// </summary>
internal sealed class TorchTensor
{
    public TorchTensor(TorchStorage storage, DType dtype, long storageOffset, long[] shape, long[] strides, string rebuiltBy)
    {
        Storage = storage;
        DType = dtype;
        StorageOffset = storageOffset;
        Shape = shape;
        Strides = strides;
        RebuiltBy = rebuiltBy;
    }

    public TorchStorage Storage { get; }

    public DType DType { get; }

    /// <summary>Offset of the first element, in elements of <see cref="DType"/>.</summary>
    public long StorageOffset { get; }

    public long[] Shape { get; }

    /// <summary>Element strides, one per dimension.</summary>
    public long[] Strides { get; }

    /// <summary>The rebuild function that produced the tensor, for messages.</summary>
    public string RebuiltBy { get; }
}
