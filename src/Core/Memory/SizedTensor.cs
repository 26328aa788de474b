using BigModel.Checkpoints;

namespace BigModel.Memory;

/// <summary>A tensor reduced to what memory arithmetic needs: name, stored dtype and element count.</summary>
public readonly record struct SizedTensor(string Name, DType DType, long ElementCount)
{
    public static SizedTensor From(TensorInfo t) => new(t.Name, t.DType, t.ElementCount);

    /// <summary>
    /// Bytes once loaded as <paramref name="target"/>: floating-point tensors take the target's width (int8/int4
    /// quantisation included), integer and bool tensors keep theirs, as loading with a torch_dtype does.
    /// </summary>
    public long BytesAs(MemoryDType target)
    {
        if (!DType.IsFloatingPoint()) return DType.ByteCount(ElementCount) ?? 0;
        return checked(ElementCount * target.Bits + 7) / 8;
    }
}
