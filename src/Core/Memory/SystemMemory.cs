using System.Globalization;
using System.Runtime.InteropServices;

namespace BigModel.Memory;

/// <summary>What <see cref="SystemMemory"/> found, with the figures behind <see cref="AvailableBytes"/>.</summary>
/// <param name="AvailableBytes">RAM this process can still use: the smaller of the kernel's estimate and the cgroup headroom.</param>
/// <param name="TotalBytes">Physical RAM, or the cgroup limit when that is smaller.</param>
/// <param name="SystemAvailableBytes">The kernel's MemAvailable (or the platform equivalent), when read.</param>
/// <param name="CgroupLimitBytes">The tightest memory limit of this process's cgroup and its ancestors, when one is set.</param>
/// <param name="CgroupUsageBytes">Memory charged to that cgroup, less reclaimable page cache.</param>
/// <param name="CgroupVersion">1 or 2 when a cgroup limit applies.</param>
/// <param name="CgroupPath">The cgroup folder whose limit applies.</param>
/// <param name="Source">One sentence on where the figure comes from, for logs.</param>
public sealed record MemorySnapshot(
    long AvailableBytes,
    long TotalBytes,
    long? SystemAvailableBytes,
    long? CgroupLimitBytes,
    long? CgroupUsageBytes,
    int? CgroupVersion,
    string? CgroupPath,
    string Source);

/// <summary>
/// Free RAM as a planner should see it. On Linux that is /proc/meminfo's MemAvailable capped by the headroom of the
/// process's memory cgroup (v1 <c>memory.limit_in_bytes</c>/<c>memory.usage_in_bytes</c>, v2 <c>memory.max</c>/
/// <c>memory.current</c>, ancestors included), because inside a container MemAvailable describes the host, and a
/// plan that trusts it gets the process OOM-killed. Reclaimable page cache (inactive_file) is not counted as used,
/// as the kernel frees it before reclaiming anything else.
/// </summary>
public static class SystemMemory
{
    /// <summary>Bytes of RAM this process can still use.</summary>
    public static long AvailableBytes() => Read().AvailableBytes;

    /// <summary>Reads the current figures.</summary>
    public static MemorySnapshot Read()
    {
        if (OperatingSystem.IsLinux())
        {
            var snapshot = ReadLinux("/");
            if (snapshot is not null) return snapshot;
        }
        if (OperatingSystem.IsWindows() && TryWindows(out var available, out var total))
            return new MemorySnapshot(available, total, available, null, null, null, null, "GlobalMemoryStatusEx available physical memory");
        return FromRuntime();
    }

    /// <summary>Linux figures read below <paramref name="root"/> ("/" normally; a fake tree in tests). Null when /proc/meminfo is unreadable.</summary>
    internal static MemorySnapshot? ReadLinux(string root)
    {
        var meminfo = ReadText(Under(root, "/proc/meminfo"));
        if (meminfo is null) return null;
        long? memTotal = MeminfoValue(meminfo, "MemTotal");
        long? memAvailable = MeminfoValue(meminfo, "MemAvailable");
        // Kernels before 3.14 have no MemAvailable; free plus page cache is the classic estimate.
        memAvailable ??= Sum(MeminfoValue(meminfo, "MemFree"), MeminfoValue(meminfo, "Buffers"), MeminfoValue(meminfo, "Cached"));
        if (memAvailable is null || memTotal is null) return null;

        var cgroup = CgroupHeadroom(root);
        long available = memAvailable.Value;
        long total = memTotal.Value;
        string source = "/proc/meminfo MemAvailable";
        if (cgroup is { } c)
        {
            long headroom = Math.Max(0, c.Limit - c.Usage);
            if (headroom < available)
            {
                available = headroom;
                source = $"cgroup v{c.Version} limit {c.Limit} minus usage {c.Usage} ({c.Path}), below MemAvailable {memAvailable}";
            }
            total = Math.Min(total, c.Limit);
        }
        return new MemorySnapshot(available, total, memAvailable, cgroup?.Limit, cgroup?.Usage, cgroup?.Version, cgroup?.Path, source);
    }

    private sealed record Cgroup(long Limit, long Usage, int Version, string Path);

    /// <summary>The tightest cgroup limit on this process (v2 preferred when it carries the memory controller).</summary>
    private static Cgroup? CgroupHeadroom(string root)
    {
        var self = ReadText(Under(root, "/proc/self/cgroup"));
        if (self is null) return null;
        string? v1Path = null, v2Path = null;
        foreach (var line in self.Split('\n'))
        {
            var parts = line.Split(':', 3);
            if (parts.Length != 3) continue;
            if (parts[0] == "0" && parts[1].Length == 0) v2Path = parts[2].Trim();
            else if (parts[1].Split(',').Contains("memory")) v1Path = parts[2].Trim();
        }
        var mounts = ReadText(Under(root, "/proc/self/mountinfo")) ?? "";
        Cgroup? best = null;
        if (v2Path is not null)
        {
            var (mountRoot, mountPoint) = FindMount(mounts, "cgroup2", null) ?? ("/", "/sys/fs/cgroup");
            best = Tighter(best, V2(root, mountRoot, mountPoint, v2Path));
        }
        if (v1Path is not null)
        {
            var (mountRoot, mountPoint) = FindMount(mounts, "cgroup", "memory") ?? ("/", "/sys/fs/cgroup/memory");
            best = Tighter(best, V1(root, mountRoot, mountPoint, v1Path));
        }
        return best;
    }

    private static Cgroup? Tighter(Cgroup? a, Cgroup? b)
    {
        if (a is null) return b;
        if (b is null) return a;
        return b.Limit - b.Usage < a.Limit - a.Usage ? b : a;
    }

    private static Cgroup? V2(string root, string mountRoot, string mountPoint, string path)
    {
        var start = CgroupFolder(root, mountRoot, mountPoint, path);
        var top = Under(root, mountPoint).TrimEnd('/');
        Cgroup? best = null;
        // A limit on any ancestor binds too, so walk up to the mount point.
        for (var dir = start; dir is not null && dir.Length >= top.Length; dir = ParentOf(dir))
        {
            var max = ReadText(Path.Combine(dir, "memory.max"))?.Trim();
            if (max is null || max == "max" || !long.TryParse(max, NumberStyles.None, CultureInfo.InvariantCulture, out var limit)) continue;
            long usage = ReadLong(Path.Combine(dir, "memory.current")) ?? 0;
            long inactive = StatValue(ReadText(Path.Combine(dir, "memory.stat")), "inactive_file") ?? 0;
            best = Tighter(best, new Cgroup(limit, Math.Max(0, usage - inactive), 2, dir));
            if (dir.Length == top.Length) break;
        }
        return best;
    }

    private static Cgroup? V1(string root, string mountRoot, string mountPoint, string path)
    {
        var dir = CgroupFolder(root, mountRoot, mountPoint, path);
        long? limit = ReadLong(Path.Combine(dir, "memory.limit_in_bytes"));
        if (limit is null) return null;
        var stat = ReadText(Path.Combine(dir, "memory.stat"));
        // memory.stat's hierarchical limit already folds in every ancestor's limit.
        if (StatValue(stat, "hierarchical_memory_limit") is long hierarchical) limit = Math.Min(limit.Value, hierarchical);
        long usage = ReadLong(Path.Combine(dir, "memory.usage_in_bytes")) ?? 0;
        long inactive = StatValue(stat, "total_inactive_file") ?? StatValue(stat, "inactive_file") ?? 0;
        return new Cgroup(limit.Value, Math.Max(0, usage - inactive), 1, dir);
    }

    /// <summary>
    /// Maps the cgroup path of /proc/self/cgroup to a folder. Inside a container the path is often relative to a
    /// mount root that is not visible, so a path that does not exist falls back to the mount point itself.
    /// </summary>
    private static string CgroupFolder(string root, string mountRoot, string mountPoint, string path)
    {
        var relative = path;
        if (mountRoot != "/" && relative.StartsWith(mountRoot, StringComparison.Ordinal)) relative = relative[mountRoot.Length..];
        var folder = Under(root, mountPoint.TrimEnd('/') + "/" + relative.TrimStart('/')).TrimEnd('/');
        if (relative.Split('/').Contains("..") || !Directory.Exists(folder)) folder = Under(root, mountPoint).TrimEnd('/');
        return folder;
    }

    /// <summary>Finds (mount root, mount point) of a cgroup file system in /proc/self/mountinfo.</summary>
    private static (string Root, string MountPoint)? FindMount(string mountinfo, string fsType, string? superOption)
    {
        foreach (var line in mountinfo.Split('\n'))
        {
            int dash = line.IndexOf(" - ", StringComparison.Ordinal);
            if (dash < 0) continue;
            var before = line[..dash].Split(' ');
            var after = line[(dash + 3)..].Split(' ');
            if (before.Length < 5 || after.Length < 3 || after[0] != fsType) continue;
            if (superOption is not null && !after[2].Split(',').Contains(superOption)) continue;
            return (Unescape(before[3]), Unescape(before[4]));
        }
        return null;
    }

    /// <summary>mountinfo writes blanks and backslashes as octal escapes (\040).</summary>
    private static string Unescape(string field)
    {
        if (!field.Contains('\\')) return field;
        var sb = new System.Text.StringBuilder(field.Length);
        for (int i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && IsOctal(field, i + 1) && IsOctal(field, i + 2) && IsOctal(field, i + 3))
            {
                sb.Append((char)((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0')));
                i += 3;
            }
            else sb.Append(field[i]);
        }
        return sb.ToString();
    }

    private static bool IsOctal(string s, int i) => i < s.Length && s[i] is >= '0' and <= '7';

    private static string? ParentOf(string dir)
    {
        int slash = dir.LastIndexOf('/');
        return slash <= 0 ? null : dir[..slash];
    }

    private static string Under(string root, string absolute) => root == "/" ? absolute : root.TrimEnd('/') + absolute;

    private static string? ReadText(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllText(path) : null;
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    private static long? ReadLong(string path)
    {
        var text = ReadText(path)?.Trim();
        return text is not null && long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : null;
    }

    /// <summary>A "key value" line of memory.stat.</summary>
    private static long? StatValue(string? stat, string key)
    {
        if (stat is null) return null;
        foreach (var line in stat.Split('\n'))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 2 && parts[0] == key && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var v)) return v;
        }
        return null;
    }

    /// <summary>A "Key:   123 kB" line of /proc/meminfo, in bytes.</summary>
    private static long? MeminfoValue(string meminfo, string key)
    {
        foreach (var line in meminfo.Split('\n'))
        {
            if (!line.StartsWith(key + ":", StringComparison.Ordinal)) continue;
            var parts = line[(key.Length + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0 || !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var v)) return null;
            bool kib = parts.Length > 1 && parts[1].Equals("kB", StringComparison.OrdinalIgnoreCase);
            if (!kib) return v;
            return v > long.MaxValue / 1024 ? null : v * 1024;
        }
        return null;
    }

    private static long? Sum(params long?[] values)
    {
        long total = 0;
        foreach (var v in values)
        {
            if (v is null) return null;
            total += v.Value;
        }
        return total;
    }

    internal static MemorySnapshot FromRuntime()
    {
        // TotalAvailableMemoryBytes is the physical memory (or the container's limit) the GC may use, and
        // MemoryLoadBytes how much of it the whole machine (or container) had in use, every process counted, when the
        // GC last ran; the difference is what was free then. Before any collection the load reads 0, which would
        // call all memory free, so one cheap gen-0 collection makes the figure current.
        var info = GC.GetGCMemoryInfo();
        if (info.Index == 0)
        {
            GC.Collect(0, GCCollectionMode.Forced, blocking: true);
            info = GC.GetGCMemoryInfo();
        }
        long total = info.TotalAvailableMemoryBytes;
        long available = Math.Max(0, total - info.MemoryLoadBytes);
        return new MemorySnapshot(available, total, null, null, null, null, null,
            "the .NET runtime's physical memory less the machine's memory load at the last garbage collection");
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MemoryStatusEx
    {
        public uint Length;
        public uint MemoryLoad;
        public ulong TotalPhys;
        public ulong AvailPhys;
        public ulong TotalPageFile;
        public ulong AvailPageFile;
        public ulong TotalVirtual;
        public ulong AvailVirtual;
        public ulong AvailExtendedVirtual;
    }

    [DllImport("kernel32.dll", SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    private static extern bool GlobalMemoryStatusEx(ref MemoryStatusEx status);

    private static bool TryWindows(out long available, out long total)
    {
        available = total = 0;
        var status = new MemoryStatusEx { Length = (uint)Marshal.SizeOf<MemoryStatusEx>() };
        try
        {
            if (!GlobalMemoryStatusEx(ref status)) return false;
        }
        catch (DllNotFoundException) { return false; }
        catch (EntryPointNotFoundException) { return false; }
        available = (long)Math.Min(status.AvailPhys, long.MaxValue);
        total = (long)Math.Min(status.TotalPhys, long.MaxValue);
        return true;
    }
}
