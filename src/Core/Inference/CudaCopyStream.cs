using System.Reflection;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// Host-to-device copies on a CUDA stream of their own, so a prefetched block's transfer overlaps the compute of the
/// block before it (which runs on the device's default stream). TorchSharp has no stream API, so this talks to the
/// CUDA runtime directly; the copy's event is waited on before the weights are used. Without a loadable runtime the
/// copier falls back to an ordinary copy issued from the prefetch thread.
/// </summary>
internal sealed class CudaCopyStream : IDisposable
{
    private const uint StreamNonBlocking = 1;
    private const uint EventDisableTiming = 2;
    private const int HostToDevice = 1;

    private readonly Device _device;
    private readonly CudaRuntime? _runtime;
    private IntPtr _stream;
    private bool _deviceSet;

    public CudaCopyStream(Device device)
    {
        _device = device;
        _runtime = CudaRuntime.TryLoad();
    }

    /// <summary>A copy in flight: the device tensor may be used once <see cref="Complete"/> has returned.</summary>
    public sealed class PendingCopy(Tensor result, Tensor source, bool ownsSource, IntPtr completion)
    {
        public Tensor Result { get; } = result;
        public Tensor Source { get; } = source;
        /// <summary>True when the source is a staging buffer to free once the copy has landed.</summary>
        public bool OwnsSource { get; } = ownsSource;
        public IntPtr Completion { get; } = completion;
    }

    /// <summary>Starts copying a contiguous (ideally pinned) host tensor to the device. Call on the prefetch thread.</summary>
    public PendingCopy Start(Tensor host, bool ownsSource)
    {
        if (_runtime is not CudaRuntime rt)
            return new PendingCopy(TorchTypes.Own(host.to(_device, copy: true)), host, ownsSource, IntPtr.Zero);
        if (!_deviceSet)
        {
            // The runtime's current device is per thread; the prefetch thread must select the target device itself.
            rt.Check(rt.SetDevice(_device.index), "cudaSetDevice");
            rt.Check(rt.StreamCreateWithFlags(out _stream, StreamNonBlocking), "cudaStreamCreateWithFlags");
            _deviceSet = true;
        }
        var result = TorchTypes.Own(empty(host.shape, host.dtype, _device));
        long bytes = host.numel() * host.element_size();
        rt.Check(rt.MemcpyAsync(TorchTypes.DataPointer(result), TorchTypes.DataPointer(host), (nuint)bytes, HostToDevice, _stream), "cudaMemcpyAsync");
        rt.Check(rt.EventCreateWithFlags(out var done, EventDisableTiming), "cudaEventCreateWithFlags");
        rt.Check(rt.EventRecord(done, _stream), "cudaEventRecord");
        return new PendingCopy(result, host, ownsSource, done);
    }

    /// <summary>Waits for the copy to land; the host source may be freed afterwards.</summary>
    public void Complete(PendingCopy copy)
    {
        if (copy.Completion != IntPtr.Zero && _runtime is CudaRuntime rt)
        {
            rt.Check(rt.EventSynchronize(copy.Completion), "cudaEventSynchronize");
            rt.EventDestroy(copy.Completion);
        }
        if (copy.OwnsSource) copy.Source.Dispose();
    }

    public void Dispose()
    {
        if (_stream != IntPtr.Zero && _runtime is CudaRuntime rt) rt.StreamDestroy(_stream);
        _stream = IntPtr.Zero;
    }

    /// <summary>The few CUDA runtime entry points the copier needs, bound from whichever libcudart is present.</summary>
    private sealed unsafe class CudaRuntime
    {
        private static readonly Lazy<CudaRuntime?> s_instance = new(Load);

        private delegate* unmanaged<int, int> _setDevice;
        private delegate* unmanaged<IntPtr*, uint, int> _streamCreate;
        private delegate* unmanaged<IntPtr, int> _streamDestroy;
        private delegate* unmanaged<IntPtr, IntPtr, nuint, int, IntPtr, int> _memcpyAsync;
        private delegate* unmanaged<IntPtr*, uint, int> _eventCreate;
        private delegate* unmanaged<IntPtr, IntPtr, int> _eventRecord;
        private delegate* unmanaged<IntPtr, int> _eventSynchronize;
        private delegate* unmanaged<IntPtr, int> _eventDestroy;

        public static CudaRuntime? TryLoad() => s_instance.Value;

        private static CudaRuntime? Load()
        {
            foreach (var name in Candidates())
            {
                if (!NativeLibrary.TryLoad(name, Assembly.GetExecutingAssembly(), null, out var lib)) continue;
                var rt = new CudaRuntime();
                if (rt.Bind(lib)) return rt;
            }
            return null;
        }

        private static IEnumerable<string> Candidates()
        {
            if (OperatingSystem.IsWindows())
            {
                yield return "cudart64_12.dll";
                yield return "cudart64_110.dll";
                yield break;
            }
            yield return "libcudart.so.12";
            yield return "libcudart.so.11.0";
            yield return "libcudart.so";
            // libtorch bundles carry the runtime under a hashed name next to the other native libraries.
            var native = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native");
            if (Directory.Exists(native))
                foreach (var file in Directory.EnumerateFiles(native, "libcudart*.so*"))
                    yield return file;
        }

        private bool Bind(IntPtr lib)
        {
            bool ok = true;
            IntPtr Get(string name)
            {
                if (NativeLibrary.TryGetExport(lib, name, out var p)) return p;
                ok = false;
                return IntPtr.Zero;
            }
            _setDevice = (delegate* unmanaged<int, int>)Get("cudaSetDevice");
            _streamCreate = (delegate* unmanaged<IntPtr*, uint, int>)Get("cudaStreamCreateWithFlags");
            _streamDestroy = (delegate* unmanaged<IntPtr, int>)Get("cudaStreamDestroy");
            _memcpyAsync = (delegate* unmanaged<IntPtr, IntPtr, nuint, int, IntPtr, int>)Get("cudaMemcpyAsync");
            _eventCreate = (delegate* unmanaged<IntPtr*, uint, int>)Get("cudaEventCreateWithFlags");
            _eventRecord = (delegate* unmanaged<IntPtr, IntPtr, int>)Get("cudaEventRecord");
            _eventSynchronize = (delegate* unmanaged<IntPtr, int>)Get("cudaEventSynchronize");
            _eventDestroy = (delegate* unmanaged<IntPtr, int>)Get("cudaEventDestroy");
            return ok;
        }

        public int SetDevice(int device) => _setDevice(device);

        public int StreamCreateWithFlags(out IntPtr stream, uint flags)
        {
            IntPtr s;
            int r = _streamCreate(&s, flags);
            stream = s;
            return r;
        }

        public int StreamDestroy(IntPtr stream) => _streamDestroy(stream);

        public int MemcpyAsync(IntPtr dst, IntPtr src, nuint count, int kind, IntPtr stream) => _memcpyAsync(dst, src, count, kind, stream);

        public int EventCreateWithFlags(out IntPtr ev, uint flags)
        {
            IntPtr e;
            int r = _eventCreate(&e, flags);
            ev = e;
            return r;
        }

        public int EventRecord(IntPtr ev, IntPtr stream) => _eventRecord(ev, stream);

        public int EventSynchronize(IntPtr ev) => _eventSynchronize(ev);

        public int EventDestroy(IntPtr ev) => _eventDestroy(ev);

        public void Check(int status, string call)
        {
            if (status != 0)
                throw new Errors.BigModelException(Errors.BigModelErrorCode.InferenceFailed, $"{call} failed with CUDA error {status}.");
        }
    }
}
