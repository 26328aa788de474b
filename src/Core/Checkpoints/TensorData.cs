using BigModel.Errors;
using BigModel.IO;
using Microsoft.Win32.SafeHandles;

namespace BigModel.Checkpoints;

/// <summary>Receives one chunk of a tensor's bytes; the span is only valid during the call.</summary>
public delegate void TensorChunkHandler(ReadOnlySpan<byte> chunk);

/// <summary>
/// Reads a tensor's bytes from its file in bounded chunks, whatever the checkpoint format: one sequential run for
/// dense tensors, a gather along the strides for the strided views PyTorch archives may hold. Chunks always end on
/// element boundaries (for 4- and 6-bit dtypes, on the byte boundaries whole elements share: every byte, every third
/// byte), so converters can work chunk by chunk.
/// </summary>
public static class TensorData
{
    public const int DefaultChunkBytes = 8 << 20;

    /// <summary>Streams <paramref name="tensor"/> in row-major order to <paramref name="handler"/>.</summary>
    public static void Read(TensorInfo tensor, TensorChunkHandler handler, byte[]? buffer = null)
    {
        using var handle = Open(tensor.File);
        Read(handle, tensor, handler, buffer);
    }

    /// <summary>As <see cref="Read(TensorInfo, TensorChunkHandler, byte[])"/> with a handle the caller keeps open.</summary>
    public static void Read(SafeFileHandle handle, TensorInfo tensor, TensorChunkHandler handler, byte[]? buffer = null)
    {
        buffer ??= new byte[DefaultChunkBytes];
        if (buffer.Length < 8) throw new ArgumentException("the buffer must hold at least 8 bytes.", nameof(buffer));
        int elementBytes = Math.Max(1, tensor.DType.Bits() / 8);
        int usable = buffer.Length / GranuleBytes(tensor.DType) * GranuleBytes(tensor.DType);
        if (tensor.IsContiguous)
        {
            long remaining = tensor.ByteLength;
            long position = tensor.DataOffset;
            while (remaining > 0)
            {
                int n = (int)Math.Min(usable, remaining);
                ReadExactly(handle, buffer.AsSpan(0, n), position, tensor);
                handler(buffer.AsSpan(0, n));
                position += n;
                remaining -= n;
            }
            return;
        }
        ReadStrided(handle, tensor, elementBytes, buffer, usable, handler);
    }

    /// <summary>
    /// The fewest bytes that hold whole elements: the element's size from 8 bits up, 1 byte for 4-bit dtypes (two
    /// elements), 3 bytes for 6-bit ones (four elements).
    /// </summary>
    internal static int GranuleBytes(DType dtype)
    {
        int bits = dtype.Bits();
        int bytes = 1;
        while (bytes * 8 % bits != 0) bytes++;
        return bits >= 8 ? bits / 8 : bytes;
    }

    /// <summary>Reads a whole (small) tensor into a new array.</summary>
    public static byte[] ReadAll(TensorInfo tensor)
    {
        if (tensor.ByteLength > Array.MaxLength)
            throw new BigModelException(BigModelErrorCode.MemoryBudgetExceeded, $"{tensor.ByteLength} bytes do not fit one array.", tensor.File, tensor: tensor.Name);
        var result = new byte[tensor.ByteLength];
        int at = 0;
        Read(tensor, chunk => { chunk.CopyTo(result.AsSpan(at)); at += chunk.Length; });
        return result;
    }

    /// <summary>Opens a weight file for <see cref="Read(SafeFileHandle, TensorInfo, TensorChunkHandler, byte[])"/>.</summary>
    public static SafeFileHandle Open(string path) => ReadableFile.OpenHandle(path, "the weight file");

    private static void ReadExactly(SafeFileHandle handle, Span<byte> destination, long position, TensorInfo tensor) =>
        ReadableFile.ReadExactly(handle, destination, position, tensor.File, BigModelErrorCode.IoFailure,
            _ => "the file ended before the tensor's data (was it truncated after opening?).", tensor.Name);

    private static void ReadStrided(SafeFileHandle handle, TensorInfo tensor, int elementBytes, byte[] buffer, int usable, TensorChunkHandler handler)
    {
        var shape = tensor.Shape;
        var strides = tensor.Strides!;
        int rank = shape.Count;
        if (tensor.ElementCount == 0) return;
        if (rank == 0)
        {
            ReadExactly(handle, buffer.AsSpan(0, elementBytes), tensor.DataOffset, tensor);
            handler(buffer.AsSpan(0, elementBytes));
            return;
        }
        long rowLength = shape[rank - 1];
        long innerStride = strides[rank - 1];
        var index = new long[rank];
        int filled = 0;
        var scratch = new byte[elementBytes];
        while (true)
        {
            long rowStart = 0;
            for (int d = 0; d < rank - 1; d++) rowStart += index[d] * strides[d];
            // A broadcast row (stride 0) repeats one element: read it once, not once per copy.
            if (innerStride == 0) ReadExactly(handle, scratch, tensor.DataOffset + rowStart * elementBytes, tensor);
            for (long i = 0; i < rowLength;)
            {
                if (innerStride == 0)
                {
                    long take = Math.Min(rowLength - i, (usable - filled) / elementBytes);
                    for (long k = 0; k < take; k++)
                    {
                        scratch.CopyTo(buffer.AsSpan(filled));
                        filled += elementBytes;
                    }
                    i += take;
                }
                else if (innerStride == 1)
                {
                    // A dense run: copy as much of it as the buffer takes.
                    long take = Math.Min(rowLength - i, (usable - filled) / elementBytes);
                    if (take > 0)
                    {
                        ReadExactly(handle, buffer.AsSpan(filled, (int)(take * elementBytes)), tensor.DataOffset + (rowStart + i) * elementBytes, tensor);
                        filled += (int)(take * elementBytes);
                        i += take;
                    }
                }
                else
                {
                    ReadExactly(handle, scratch, tensor.DataOffset + (rowStart + i * innerStride) * elementBytes, tensor);
                    scratch.CopyTo(buffer.AsSpan(filled));
                    filled += elementBytes;
                    i++;
                }
                if (usable - filled < elementBytes)
                {
                    handler(buffer.AsSpan(0, filled));
                    filled = 0;
                }
            }
            int dim = rank - 2;
            while (dim >= 0)
            {
                if (++index[dim] < shape[dim]) break;
                index[dim] = 0;
                dim--;
            }
            if (dim < 0) break;
        }
        if (filled > 0) handler(buffer.AsSpan(0, filled));
    }
}
