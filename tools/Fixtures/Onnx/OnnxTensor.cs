using System.Runtime.InteropServices;
using BigModel.Errors;

namespace BigModel.Fixtures.Onnx;

/// <summary>
/// An ONNX <c>TensorProto</c>: name, element type, dimensions and its data as little-endian bytes (a view into the
/// model file for <c>raw_data</c> and packed <c>float_data</c>; decoded for the other typed fields).
/// </summary>
public sealed class OnnxTensor
{
    internal OnnxTensor(string name, OnnxDataType dataType, long[] dims, ReadOnlyMemory<byte> data, long fileOffset)
    {
        Name = name;
        DataType = dataType;
        Dims = dims;
        Data = data;
        FileOffset = fileOffset;
        long n = 1;
        foreach (var d in dims) n = checked(n * d);
        ElementCount = n;
    }

    public string Name { get; }

    public OnnxDataType DataType { get; }

    public IReadOnlyList<long> Dims { get; }

    public long ElementCount { get; }

    /// <summary>The elements as little-endian bytes, row-major.</summary>
    public ReadOnlyMemory<byte> Data { get; }

    /// <summary>Where the TensorProto starts in the model file.</summary>
    public long FileOffset { get; }

    /// <summary>The data as floats; only for FLOAT tensors whose byte count matches their dimensions.</summary>
    public ReadOnlySpan<float> Floats
    {
        get
        {
            if (DataType != OnnxDataType.Float)
                throw new BigModelException(BigModelErrorCode.UnsupportedFormat, $"initializer is {DataType}, not FLOAT.", offset: FileOffset, tensor: Name);
            return MemoryMarshal.Cast<byte, float>(Data.Span);
        }
    }

    public override string ToString() => $"{Name} {DataType} [{string.Join(", ", Dims)}]";
}
