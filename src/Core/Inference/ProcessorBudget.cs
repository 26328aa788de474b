using System.Globalization;

namespace BigModel.Inference;

/// <summary>
/// How many cores this process may compute on: the CPUs its affinity mask allows, capped by a cgroup CPU quota
/// (containers' <c>--cpus</c>), at least 1. Running more compute threads than that only adds contention.
/// </summary>
public static class ProcessorBudget
{
    /// <summary>Cores available to this process.</summary>
    public static int AvailableCores()
    {
        int cores = Environment.ProcessorCount;
        if (!OperatingSystem.IsLinux()) return Math.Max(1, cores);
        if (ReadText("/proc/self/status") is string status && AffinityCount(status) is int allowed) cores = allowed;
        if (CgroupQuota(ReadText("/proc/self/cgroup") ?? "", ReadText) is double quota)
            cores = Math.Min(cores, (int)Math.Ceiling(quota));
        return Math.Max(1, cores);
    }

    /// <summary>The number of CPUs in <c>Cpus_allowed_list</c> of a /proc/[pid]/status text.</summary>
    internal static int? AffinityCount(string status)
    {
        foreach (var line in status.Split('\n'))
        {
            if (!line.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal)) continue;
            return CountCpuList(line["Cpus_allowed_list:".Length..].Trim());
        }
        return null;
    }

    /// <summary>Counts a kernel CPU list such as <c>0-3,8,10-11</c>; null when it does not parse.</summary>
    internal static int? CountCpuList(string list)
    {
        if (list.Length == 0) return null;
        long count = 0;
        foreach (var part in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var range = part.Split('-');
            if (range.Length == 1 && int.TryParse(range[0], NumberStyles.None, CultureInfo.InvariantCulture, out _)) count++;
            else if (range.Length == 2 && int.TryParse(range[0], NumberStyles.None, CultureInfo.InvariantCulture, out var a)
                     && int.TryParse(range[1], NumberStyles.None, CultureInfo.InvariantCulture, out var b) && b >= a) count += b - a + 1;
            else return null;
        }
        return count is > 0 and <= int.MaxValue ? (int)count : null;
    }

    /// <summary>
    /// The tightest CPU quota (in cores) on the process's cgroup path and its ancestors, for cgroup v2
    /// (<c>cpu.max</c>) and v1 (<c>cpu.cfs_quota_us</c> / <c>cpu.cfs_period_us</c>); null when unlimited.
    /// </summary>
    internal static double? CgroupQuota(string procSelfCgroup, Func<string, string?> read)
    {
        double? best = null;
        void Consider(double? q)
        {
            if (q is double v && v > 0 && (best is null || v < best)) best = v;
        }
        foreach (var line in procSelfCgroup.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = line.Split(':', 3);
            if (fields.Length != 3) continue;
            var controllers = fields[1].Split(',');
            var path = fields[2].Trim();
            if (fields[0] == "0" && fields[1].Length == 0)
            {
                foreach (var dir in Ancestors("/sys/fs/cgroup", path).Concat(Ancestors("/sys/fs/cgroup/unified", path)))
                    Consider(ParseCpuMax(read(dir + "/cpu.max")));
            }
            else if (controllers.Contains("cpu"))
            {
                foreach (var mount in new[] { "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuacct,cpu" })
                    foreach (var dir in Ancestors(mount, path))
                        Consider(ParseCfsQuota(read(dir + "/cpu.cfs_quota_us"), read(dir + "/cpu.cfs_period_us")));
            }
        }
        return best;
    }

    /// <summary><c>cpu.max</c>: "max 100000" (unlimited) or "quota period".</summary>
    internal static double? ParseCpuMax(string? text)
    {
        if (text is null) return null;
        var parts = text.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length != 2 || parts[0] == "max") return null;
        return long.TryParse(parts[0], CultureInfo.InvariantCulture, out var quota) && long.TryParse(parts[1], CultureInfo.InvariantCulture, out var period)
               && quota > 0 && period > 0
            ? (double)quota / period
            : null;
    }

    /// <summary>cgroup v1: a quota of -1 is unlimited.</summary>
    internal static double? ParseCfsQuota(string? quotaText, string? periodText)
    {
        if (quotaText is null || periodText is null) return null;
        return long.TryParse(quotaText.Trim(), CultureInfo.InvariantCulture, out var quota) && long.TryParse(periodText.Trim(), CultureInfo.InvariantCulture, out var period)
               && quota > 0 && period > 0
            ? (double)quota / period
            : null;
    }

    // The cgroup's own folder and every folder above it up to the mount point: limits on a parent apply too.
    // Inside a container the path may not exist under the mount (it is the container's root), so the mount itself is included.
    private static IEnumerable<string> Ancestors(string mount, string path)
    {
        var segments = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        for (int n = segments.Length; n >= 0; n--)
            yield return n == 0 ? mount : mount + "/" + string.Join('/', segments.Take(n));
    }

    private static string? ReadText(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllText(path) : null;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
