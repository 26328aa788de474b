using System.Security.Cryptography;
using System.Text;

namespace BigModel.Build.Tasks;

/// <summary>
/// Incremental builds for tasks whose inputs MSBuild cannot list (the files of a checkpoint folder are known only
/// after opening it): an output is current when it is newer than every input and a stamp beside it records the same
/// parameters. The stamp is written last, so an interrupted task is simply redone.
/// </summary>
internal static class IncrementalStamp
{
    public static string PathFor(string output) =>
        Path.Combine(Path.GetDirectoryName(output)!, "." + Path.GetFileName(output) + ".bigmodel-stamp");

    public static bool IsCurrent(string output, IEnumerable<string> inputs, string parameters)
    {
        var stamp = PathFor(output);
        if (!File.Exists(output) && !Directory.Exists(output)) return false;
        if (!File.Exists(stamp) || File.ReadAllText(stamp) != Hash(parameters)) return false;
        var built = File.GetLastWriteTimeUtc(stamp);
        return inputs.All(i => File.GetLastWriteTimeUtc(i) <= built);
    }

    public static void Write(string output, string parameters) => File.WriteAllText(PathFor(output), Hash(parameters));

    private static string Hash(string parameters) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(parameters)));
}
