namespace BigModel.Fuzz;

/// <summary>
/// A private folder for targets that need real files (indexes, shards, archives). Lives in /dev/shm when it exists,
/// so a hundred thousand inputs do not wear a disk.
/// </summary>
public sealed class Scratch : IDisposable
{
    public Scratch()
    {
        var baseDir = Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        Root = Path.Combine(baseDir, "bigmodel-fuzz-" + Environment.ProcessId + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(Root);
    }

    public string Root { get; }

    /// <summary>A sub-folder of the scratch area, created on first use and kept between inputs.</summary>
    public string Folder(string name)
    {
        var path = Path.Combine(Root, name);
        Directory.CreateDirectory(path);
        return path;
    }

    public string Write(string name, byte[] bytes, string? folder = null)
    {
        var path = Path.Combine(folder ?? Root, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, true); }
        catch (IOException) { }
    }
}
