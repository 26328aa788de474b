using System.Runtime.InteropServices;

namespace BigModel.Memory;

/// <summary>Free and total memory of one CUDA device, in bytes.</summary>
public sealed record CudaDeviceMemory(int Index, long FreeBytes, long TotalBytes);

/// <summary>
/// Free memory per CUDA device, as Accelerate's get_max_memory reads it with torch.cuda.mem_get_info after
/// initialising each device. libtorch is only loaded when a CUDA driver is installed at all (loading it costs
/// seconds), and devices count only when TorchSharp's build can use CUDA: a CPU-only libtorch cannot run on a GPU
/// even when the machine has one. TorchSharp has no mem_get_info, so the figures come from the CUDA driver API
/// (cuMemGetInfo on each device's primary context, the context torch itself uses).
/// </summary>
public static unsafe class CudaMemory
{
    /// <summary>Devices usable through TorchSharp with their memory; empty when there are none.</summary>
    /// <param name="notes">Receives one line per device skipped or per reason CUDA was not used.</param>
    public static IReadOnlyList<CudaDeviceMemory> Devices(ICollection<string>? notes = null)
    {
        if (!TryLoadDriver(out var driver))
        {
            notes?.Add("no CUDA driver is installed; GPUs are not probed.");
            return [];
        }
        int count;
        try
        {
            if (!TorchSharp.torch.cuda.is_available())
            {
                notes?.Add("the CUDA driver is installed but TorchSharp's libtorch build cannot use CUDA (CPU-only backend, or no usable device).");
                return [];
            }
            count = TorchSharp.torch.cuda.device_count();
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException
                                      or NotSupportedException or InvalidOperationException or BadImageFormatException)
        {
            notes?.Add($"libtorch could not be loaded to check for CUDA ({e.GetType().Name}: {e.Message}).");
            return [];
        }
        var api = DriverApi.Bind(driver);
        if (api is null || api.Value.Init(0) != 0)
        {
            notes?.Add("the CUDA driver API could not be initialised.");
            return [];
        }
        var list = new List<CudaDeviceMemory>(count);
        for (int i = 0; i < count; i++)
        {
            if (api.Value.TryMemGetInfo(i, out var free, out var total)) list.Add(new CudaDeviceMemory(i, free, total));
            else notes?.Add($"CUDA device {i} seems unavailable; it is skipped.");
        }
        return list;
    }

    private static bool TryLoadDriver(out IntPtr handle)
    {
        handle = IntPtr.Zero;
        string? name = OperatingSystem.IsLinux() ? "libcuda.so.1" : OperatingSystem.IsWindows() ? "nvcuda.dll" : null;
        return name is not null && NativeLibrary.TryLoad(name, out handle);
    }

    /// <summary>The handful of driver entry points needed, bound from the loaded library.</summary>
    private readonly struct DriverApi
    {
        private readonly delegate* unmanaged<uint, int> _init;
        private readonly delegate* unmanaged<int*, int, int> _deviceGet;
        private readonly delegate* unmanaged<IntPtr*, int, int> _primaryCtxRetain;
        private readonly delegate* unmanaged<int, int> _primaryCtxRelease;
        private readonly delegate* unmanaged<IntPtr, int> _ctxPush;
        private readonly delegate* unmanaged<IntPtr*, int> _ctxPop;
        private readonly delegate* unmanaged<nuint*, nuint*, int> _memGetInfo;

        private DriverApi(IntPtr lib)
        {
            _init = (delegate* unmanaged<uint, int>)NativeLibrary.GetExport(lib, "cuInit");
            _deviceGet = (delegate* unmanaged<int*, int, int>)NativeLibrary.GetExport(lib, "cuDeviceGet");
            _primaryCtxRetain = (delegate* unmanaged<IntPtr*, int, int>)NativeLibrary.GetExport(lib, "cuDevicePrimaryCtxRetain");
            _primaryCtxRelease = (delegate* unmanaged<int, int>)(NativeLibrary.TryGetExport(lib, "cuDevicePrimaryCtxRelease_v2", out var r2)
                ? r2 : NativeLibrary.GetExport(lib, "cuDevicePrimaryCtxRelease"));
            _ctxPush = (delegate* unmanaged<IntPtr, int>)NativeLibrary.GetExport(lib, "cuCtxPushCurrent_v2");
            _ctxPop = (delegate* unmanaged<IntPtr*, int>)NativeLibrary.GetExport(lib, "cuCtxPopCurrent_v2");
            _memGetInfo = (delegate* unmanaged<nuint*, nuint*, int>)NativeLibrary.GetExport(lib, "cuMemGetInfo_v2");
        }

        public static DriverApi? Bind(IntPtr lib)
        {
            try { return new DriverApi(lib); }
            catch (EntryPointNotFoundException) { return null; }
        }

        public int Init(uint flags) => _init(flags);

        public bool TryMemGetInfo(int ordinal, out long free, out long total)
        {
            free = total = 0;
            int device;
            if (_deviceGet(&device, ordinal) != 0) return false;
            IntPtr context;
            if (_primaryCtxRetain(&context, device) != 0) return false;
            try
            {
                if (_ctxPush(context) != 0) return false;
                nuint f, t;
                int status = _memGetInfo(&f, &t);
                IntPtr popped;
                _ctxPop(&popped);
                if (status != 0) return false;
                free = (long)Math.Min((ulong)f, long.MaxValue);
                total = (long)Math.Min((ulong)t, long.MaxValue);
                return true;
            }
            finally
            {
                _primaryCtxRelease(device);
            }
        }
    }
}
