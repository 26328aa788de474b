using System.Runtime.InteropServices;
using BigModel.Errors;

namespace BigModel.Inference;

/// <summary>
/// Where the native runtime (libtorch, LibTorchSharp, the tokenizer library) comes from. Build and publish outputs
/// carry it beside TorchSharp.dll. Installed packages keep it apart, in a per-platform runtime package (as TorchSharp
/// does with libtorch), so the module itself stays small: the host finds that package and calls <see cref="Use"/>,
/// or <c>BIGMODEL_RUNTIME</c> names the folder. Loading the libraries by full path first makes every later load by
/// name (TorchSharp's own) find them.
/// </summary>
public static class NativeRuntime
{
    private static readonly object Gate = new();
    private static string? _directory;

    /// <summary>The environment variable that may name the runtime folder.</summary>
    public const string EnvironmentVariable = "BIGMODEL_RUNTIME";

    /// <summary>Name of the runtime package for this platform, e.g. BigModel.Runtime.linux-x64.</summary>
    public static string PackageName => "BigModel.Runtime." + RuntimeInformation.RuntimeIdentifier;

    /// <summary>The folder the runtime was loaded from by <see cref="Use"/>, if it was.</summary>
    public static string? Directory => _directory;

    /// <summary>
    /// True when the natives come with the application: beside TorchSharp.dll (a publish output) or under
    /// runtimes/&lt;rid&gt;/native/ next to it, where build and test outputs keep them for the host to resolve.
    /// </summary>
    public static bool IsBundled
    {
        get
        {
            var folder = Path.GetDirectoryName(typeof(TorchSharp.torch).Assembly.Location) ?? "";
            var file = LibraryFile("LibTorchSharp");
            return File.Exists(Path.Combine(folder, file))
                || File.Exists(Path.Combine(folder, "runtimes", RuntimeInformation.RuntimeIdentifier, "native", file));
        }
    }

    /// <summary>True when torch can load without further help: bundled, or a folder already in use.</summary>
    public static bool IsAvailable => IsBundled || _directory is not null;

    /// <summary>Loads the runtime from <paramref name="directory"/>; later calls with another folder are refused.</summary>
    public static void Use(string directory)
    {
        lock (Gate)
        {
            var full = Path.GetFullPath(directory);
            if (_directory is not null)
            {
                if (string.Equals(_directory, full, StringComparison.Ordinal)) return;
                throw new BigModelException(BigModelErrorCode.TorchUnavailable,
                    $"the native runtime is already loaded from {_directory}; a process can use only one.", full);
            }
            var torchSharp = Path.Combine(full, LibraryFile("LibTorchSharp"));
            if (!File.Exists(torchSharp))
                throw new BigModelException(BigModelErrorCode.TorchUnavailable, $"{LibraryFile("LibTorchSharp")} is not in this folder; it is not a BigModel runtime.", full);
            // Dependencies first, so each load finds what it needs already mapped.
            foreach (var name in new[] { "c10", "torch_cpu", "torch", "LibTorchSharp", "hf_tokenizers" })
            {
                var file = Path.Combine(full, LibraryFile(name));
                if (!File.Exists(file)) continue;
                try
                {
                    NativeLibrary.Load(file);
                }
                catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
                {
                    throw new BigModelException(BigModelErrorCode.TorchUnavailable, $"{Path.GetFileName(file)} could not be loaded: {e.Message}", file, inner: e);
                }
            }
            _directory = full;
        }
    }

    /// <summary>Makes sure the runtime can load: bundled, already in use, or named by BIGMODEL_RUNTIME.</summary>
    public static void EnsureAvailable()
    {
        if (IsAvailable) return;
        if (Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } folder)
        {
            Use(folder);
            return;
        }
        throw new BigModelException(BigModelErrorCode.TorchUnavailable,
            $"the native torch runtime is not installed: install the {PackageName} package (Install-PSResource {PackageName}), or set {EnvironmentVariable} to a folder holding it.");
    }

    /// <summary>The platform's file name for a native library: libX.so, X.dll, libX.dylib.</summary>
    public static string LibraryFile(string name) =>
        OperatingSystem.IsWindows() ? name + ".dll" : OperatingSystem.IsMacOS() ? "lib" + name + ".dylib" : "lib" + name + ".so";
}
