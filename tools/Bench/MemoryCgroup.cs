using System.Diagnostics;
using System.Globalization;

namespace BigModel.Bench;

/// <summary>
/// A memory cgroup created for one measurement and removed after it: the processes started through
/// <see cref="Start"/> run inside it, so their anonymous memory and their page cache together stay below the limit and
/// a checkpoint larger than the limit really is read from storage on every token. cgroup v1
/// (<c>/sys/fs/cgroup/memory</c>) where mounted, else v2. Needs root.
/// </summary>
public sealed class MemoryCgroup : IDisposable
{
    private readonly string _path;
    private readonly int _version;

    private MemoryCgroup(string path, int version)
    {
        _path = path;
        _version = version;
    }

    public string Path => _path;

    /// <summary>Creates the cgroup (no limit until <see cref="SetLimit"/>), or returns null with the reason it cannot.</summary>
    public static MemoryCgroup? TryCreate(string name, out string? whyNot)
    {
        whyNot = null;
        if (!OperatingSystem.IsLinux())
        {
            whyNot = "memory cgroups exist only on Linux";
            return null;
        }
        if (Environment.UserName != "root")
        {
            whyNot = $"creating a memory cgroup needs root (running as {Environment.UserName})";
            return null;
        }
        try
        {
            if (File.Exists("/sys/fs/cgroup/memory/memory.limit_in_bytes") || Directory.Exists("/sys/fs/cgroup/memory/"))
            {
                var v1 = System.IO.Path.Combine("/sys/fs/cgroup/memory", name);
                Directory.CreateDirectory(v1);
                return new MemoryCgroup(v1, 1);
            }
            if (File.Exists("/sys/fs/cgroup/cgroup.controllers"))
            {
                // v2 hands the memory controller to children only when the parent's subtree_control lists it.
                File.AppendAllText("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
                var v2 = System.IO.Path.Combine("/sys/fs/cgroup", name);
                Directory.CreateDirectory(v2);
                return new MemoryCgroup(v2, 2);
            }
            whyNot = "no cgroup v1 memory controller or cgroup v2 hierarchy under /sys/fs/cgroup";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            whyNot = $"could not create the cgroup: {e.Message}";
        }
        return null;
    }

    public void SetLimit(long bytes) =>
        File.WriteAllText(System.IO.Path.Combine(_path, _version == 1 ? "memory.limit_in_bytes" : "memory.max"), bytes.ToString(CultureInfo.InvariantCulture));

    /// <summary>The highest memory (anonymous + page cache) charged to the cgroup since it was created or last reset.</summary>
    public long PeakBytes
    {
        get
        {
            var file = System.IO.Path.Combine(_path, _version == 1 ? "memory.max_usage_in_bytes" : "memory.peak");
            return File.Exists(file) ? long.Parse(File.ReadAllText(file).Trim(), CultureInfo.InvariantCulture) : -1;
        }
    }

    public void ResetPeak()
    {
        var file = System.IO.Path.Combine(_path, _version == 1 ? "memory.max_usage_in_bytes" : "memory.peak");
        if (File.Exists(file)) File.WriteAllText(file, "0");
    }

    /// <summary>Times the limit was hit (v1 failcnt) or the OOM killer ran (v2 memory.events oom_kill).</summary>
    public long LimitHits
    {
        get
        {
            if (_version == 1) return long.Parse(File.ReadAllText(System.IO.Path.Combine(_path, "memory.failcnt")).Trim(), CultureInfo.InvariantCulture);
            foreach (var line in File.ReadLines(System.IO.Path.Combine(_path, "memory.events")))
                if (line.StartsWith("max ", StringComparison.Ordinal)) return long.Parse(line[4..], CultureInfo.InvariantCulture);
            return 0;
        }
    }

    /// <summary>
    /// Starts <paramref name="program"/> inside the cgroup: a shell writes its own pid into the cgroup, then execs the
    /// program, so nothing the program allocates is charged elsewhere.
    /// </summary>
    public Process Start(string program, IEnumerable<string> args)
    {
        var info = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add("echo $$ > \"$0\" && exec \"$@\"");
        info.ArgumentList.Add(System.IO.Path.Combine(_path, "cgroup.procs"));
        info.ArgumentList.Add(program);
        foreach (var a in args) info.ArgumentList.Add(a);
        return Process.Start(info) ?? throw new InvalidOperationException("could not start /bin/sh");
    }

    /// <summary>Empties the page cache (as root), so a run cannot read weights that an earlier run left cached outside the cgroup.</summary>
    public static void DropPageCache()
    {
        using (var sync = Process.Start("sync")) sync?.WaitForExit();
        File.WriteAllText("/proc/sys/vm/drop_caches", "1");
    }

    public void Dispose()
    {
        // rmdir succeeds once no process is left; the children were waited for, but give the kernel a moment.
        for (int attempt = 0; attempt < 50; attempt++)
        {
            try
            {
                Directory.Delete(_path);
                return;
            }
            catch (IOException)
            {
                Thread.Sleep(100);
            }
        }
    }
}
