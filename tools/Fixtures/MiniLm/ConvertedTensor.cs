using System.Runtime.InteropServices;
using BigModel.Fixtures.Onnx;

namespace BigModel.Fixtures.MiniLm;

/// <summary>
/// One Hugging Face tensor made from one ONNX initializer: as stored, or transposed from the exporter's
/// [in, out] MatMul layout back to the [out, in] layout of <c>nn.Linear.weight</c>.
/// </summary>
public sealed record ConvertedTensor(string Name, long[] Shape, OnnxTensor Source, bool Transposed)
{
    public long ByteLength => Source.Data.Length;

    /// <summary>Writes the tensor's F32 bytes, row-major in <see cref="Shape"/>, into <paramref name="destination"/>.</summary>
    public void CopyTo(Span<byte> destination)
    {
        if (!Transposed)
        {
            Source.Data.Span.CopyTo(destination);
            return;
        }
        int rows = (int)Source.Dims[0], cols = (int)Source.Dims[1];
        var from = Source.Floats;
        var to = MemoryMarshal.Cast<byte, float>(destination[..Source.Data.Length]);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                to[c * rows + r] = from[r * cols + c];
    }
}
