using BigModel.Errors;
using TorchSharp;

namespace BigModel.Inference;

/// <summary>Process-wide torch setup: the native runtime must load, and computes with the given number of threads.</summary>
internal static class TorchRuntime
{
    /// <summary>Whether libtorch has been loaded into this process.</summary>
    public static bool IsLoaded { get; private set; }

    public static void Initialise(int threads)
    {
        NativeRuntime.EnsureAvailable();
        try
        {
            torch.set_num_threads(threads);
            IsLoaded = true;
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or NotSupportedException or InvalidOperationException or BadImageFormatException)
        {
            throw new BigModelException(BigModelErrorCode.TorchUnavailable,
                $"the libtorch runtime could not be loaded ({e.Message.Split('\n', 2)[0].Trim()}); install the {NativeRuntime.PackageName} package or the libtorch package for this platform.", inner: e);
        }
    }
}
