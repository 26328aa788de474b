using BigModel.Checkpoints;
using BigModel.Errors;
using TorchSharp;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// Read-only, copy-on-write mappings of weight files, one per file and element type, and zero-copy tensor views into
/// them. Pages come from the page cache on first touch, so mapped weights cost no anonymous memory and the kernel
/// may drop them whenever memory is short. A mapping is never opened shared: that would write through to the file.
/// </summary>
internal sealed class MappedWeightFiles : IDisposable
{
    private readonly Dictionary<(string File, ScalarType Type), Tensor> _maps = new();
    private readonly Dictionary<string, Microsoft.Win32.SafeHandles.SafeFileHandle> _handles = new(StringComparer.Ordinal);
    private readonly object _gate = new();
    private bool _disposed;

    /// <summary>
    /// A view of <paramref name="tensor"/>'s bytes as stored, or null when it cannot be one: strided storage, or a
    /// data offset that is not a multiple of the element size (views must be element-aligned within a mapping).
    /// </summary>
    public Tensor? TryView(TensorInfo tensor)
    {
        if (!CanView(tensor)) return null;
        var type = TorchTypes.ScalarTypeOf(tensor);
        int size = TorchTypes.ElementSize(type);
        var map = Map(tensor.File, type);
        using var flat = map.narrow(0, tensor.DataOffset / size, tensor.ElementCount);
        return flat.view(tensor.Shape.ToArray());
    }

    /// <summary>True when <paramref name="tensor"/> can be viewed in place.</summary>
    public static bool CanView(TensorInfo tensor) =>
        tensor.IsContiguous
        && TorchTypes.TryScalarType(tensor.DType, out var type)
        && tensor.DataOffset % TorchTypes.ElementSize(type) == 0
        && tensor.ByteLength == tensor.ElementCount * TorchTypes.ElementSize(type);

    /// <summary>The mapped address range of a viewable tensor, for page-in advice.</summary>
    public (IntPtr Address, long Length) AddressRange(TensorInfo tensor)
    {
        var type = TorchTypes.ScalarTypeOf(tensor);
        var map = Map(tensor.File, type);
        return (TorchTypes.DataPointer(map) + (nint)tensor.DataOffset, tensor.ByteLength);
    }

    /// <summary>Drops a viewable tensor's pages from this process and the page cache (see <see cref="Inference.PageIn.Release"/>).</summary>
    public void Release(TensorInfo tensor)
    {
        var (address, length) = AddressRange(tensor);
        Inference.PageIn.Release(address, length, Handle(tensor.File), tensor.DataOffset);
    }

    /// <summary>Tells the kernel a viewable tensor is read a few rows at a time (see <see cref="Inference.PageIn.AdviseRandom"/>).</summary>
    public void AdviseLookups(TensorInfo tensor)
    {
        var (address, length) = AddressRange(tensor);
        Inference.PageIn.AdviseRandom(address, length);
    }

    /// <summary>Brings a viewable tensor's pages in ahead of use (see <see cref="PageInMethod"/>).</summary>
    public void PageIn(TensorInfo tensor, PageInMethod method)
    {
        var (address, length) = AddressRange(tensor);
        Inference.PageIn.Run(method, address, length, method == PageInMethod.Read ? Handle(tensor.File) : null, tensor.DataOffset);
    }

    /// <summary>A read handle on <paramref name="file"/>, opened once and kept until disposal.</summary>
    public Microsoft.Win32.SafeHandles.SafeFileHandle Handle(string file)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_handles.TryGetValue(file, out var handle)) _handles[file] = handle = TensorData.Open(file);
            return handle;
        }
    }

    private Tensor Map(string file, ScalarType type)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_maps.TryGetValue((file, type), out var existing)) return existing;
            long length;
            try
            {
                length = new FileInfo(file).Length;
            }
            catch (IOException e)
            {
                throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, file, inner: e);
            }
            int size = TorchTypes.ElementSize(type);
            Tensor map;
            try
            {
                // shared: false maps MAP_PRIVATE from a read-only descriptor: the checkpoint can never be modified.
                map = TorchTypes.Own(from_file(file, shared: false, size: length / size, dtype: type));
            }
            catch (Exception e) when (e is System.Runtime.InteropServices.ExternalException or InvalidOperationException or ArgumentException)
            {
                throw new BigModelException(BigModelErrorCode.IoFailure, $"the weight file could not be memory-mapped: {FirstLine(e.Message)}", file, inner: e);
            }
            _maps[(file, type)] = map;
            return map;
        }
    }

    private static string FirstLine(string text) => text.Split('\n', 2)[0].Trim();

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var map in _maps.Values) map.Dispose();
            _maps.Clear();
            foreach (var handle in _handles.Values) handle.Dispose();
            _handles.Clear();
        }
    }
}
