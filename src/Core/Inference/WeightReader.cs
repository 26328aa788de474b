using BigModel.Checkpoints;
using BigModel.Errors;
using TorchSharp;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// Turns checkpoint tensors into torch tensors: zero-copy views of the mapped files where possible, otherwise
/// fresh copies read from the file, converted to the requested floating-point type and moved to a device.
/// </summary>
internal sealed class WeightReader : IDisposable
{
    private readonly MappedWeightFiles _maps = new();
    private readonly ScalarType? _floatType;

    public WeightReader(ScalarType? floatType) => _floatType = floatType;

    public MappedWeightFiles Maps => _maps;

    /// <summary>The type <paramref name="tensor"/> computes in: the requested float type for floating weights, else as stored.</summary>
    public ScalarType TargetType(TensorInfo tensor)
    {
        var stored = TorchTypes.ScalarTypeOf(tensor);
        return _floatType is ScalarType f && TorchTypes.IsFloating(stored) ? f : stored;
    }

    /// <summary>Bytes <paramref name="tensor"/> occupies once converted.</summary>
    public long TargetBytes(TensorInfo tensor) => tensor.ElementCount * TorchTypes.ElementSize(TargetType(tensor));

    /// <summary>True when the tensor can be computed with straight from its mapping (aligned, no conversion).</summary>
    public bool CanComputeMapped(TensorInfo tensor) =>
        MappedWeightFiles.CanView(tensor) && TargetType(tensor) == TorchTypes.ScalarTypeOf(tensor);

    /// <summary>A zero-copy view of the stored bytes, or null (see <see cref="MappedWeightFiles.TryView"/>).</summary>
    public Tensor? MappedView(TensorInfo tensor) => _maps.TryView(tensor) is Tensor view ? TorchTypes.Own(view) : null;

    /// <summary>
    /// A tensor that owns its memory, holding <paramref name="tensor"/>'s values in its target type on
    /// <paramref name="device"/>; pinned when asked (page-locked host memory for fast, asynchronous device copies).
    /// <paramref name="dropFromCache"/> evicts the bytes read from the page cache afterwards.
    /// </summary>
    public Tensor Load(TensorInfo tensor, Device device, bool pin = false, bool dropFromCache = false)
    {
        var target = TargetType(tensor);
        // Read with large sequential reads straight into the new tensor: faulting a cold file in through a mapping
        // would read it a few pages at a time.
        var read = ReadCopy(tensor, dropFromCache);
        if (pin)
        {
            using (read)
            {
                if (target == read.dtype) return TorchTypes.Own(read.pin_memory());
                using var converted = read.to(target);
                return TorchTypes.Own(converted.pin_memory());
            }
        }
        if (target == read.dtype && device.type == DeviceType.CPU) return read;
        using (read) return TorchTypes.Own(read.to(target, device, copy: true));
    }

    /// <summary>
    /// Reads <paramref name="tensor"/>'s stored bytes into <paramref name="destination"/>, a contiguous host tensor
    /// of its stored type and element count (a view into a staging buffer).
    /// </summary>
    public static unsafe void ReadInto(TensorInfo tensor, Tensor destination, bool dropFromCache)
    {
        if (tensor.ByteLength == 0) return;
        byte* target = (byte*)TorchTypes.DataPointer(destination);
        if (tensor.IsContiguous)
        {
            using var handle = TensorData.Open(tensor.File);
            ReadAtLeast(handle, target, tensor.ByteLength, tensor.ByteLength, tensor.DataOffset, tensor.File, tensor.Name);
            if (dropFromCache) PageIn.DropFromCache(handle, tensor.DataOffset, tensor.ByteLength);
            return;
        }
        long at = 0;
        TensorData.Read(tensor, chunk =>
        {
            if (at + chunk.Length > tensor.ByteLength)
                throw new BigModelException(BigModelErrorCode.IoFailure, "the tensor's data is longer than its header says.", tensor.File, tensor: tensor.Name);
            chunk.CopyTo(new Span<byte>(target + at, chunk.Length));
            at += chunk.Length;
        });
        if (at != tensor.ByteLength)
            throw new BigModelException(BigModelErrorCode.IoFailure, $"read {at} of {tensor.ByteLength} bytes.", tensor.File, tensor: tensor.Name);
    }

    /// <summary>Reads the stored bytes into new host memory, gathering strided data; works for every source format.</summary>
    public static Tensor ReadCopy(TensorInfo tensor, bool dropFromCache = false)
    {
        var type = TorchTypes.ScalarTypeOf(tensor);
        if (tensor.ElementCount * TorchTypes.ElementSize(type) != tensor.ByteLength)
            throw new BigModelException(BigModelErrorCode.SafetensorsTensorSizeMismatch,
                $"{tensor.ByteLength} bytes do not hold {tensor.ElementCount} elements of {tensor.DType}.", tensor.File, tensor: tensor.Name);
        var result = TorchTypes.Own(empty(tensor.Shape.ToArray(), type, CPU));
        try
        {
            ReadInto(tensor, result, dropFromCache);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads at least <paramref name="needed"/> and at most <paramref name="room"/> bytes at <paramref name="offset"/>
    /// into native memory, in reads of at most 64 MiB: unbuffered reads ask for whole aligned blocks, which may run
    /// past the end of the file. Ending before <paramref name="needed"/> bytes is an I/O error naming the file.
    /// </summary>
    internal static unsafe void ReadAtLeast(Microsoft.Win32.SafeHandles.SafeFileHandle handle, byte* destination, long needed, long room, long offset,
        string file, string? tensor)
    {
        const int Chunk = 64 << 20;
        long done = 0;
        while (done < needed)
        {
            int want = (int)Math.Min(Chunk, room - done);
            int n;
            try
            {
                n = RandomAccess.Read(handle, new Span<byte>(destination + done, want), offset + done);
            }
            catch (IOException e)
            {
                throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, file, offset + done, tensor, e);
            }
            if (n == 0)
                throw new BigModelException(BigModelErrorCode.IoFailure, "the file ended before the tensor's data (was it truncated after opening?).", file, offset + done, tensor);
            done += n;
        }
    }

    public void Dispose() => _maps.Dispose();
}
