using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.IO;

namespace BigModel.Inference;

/// <summary>
/// Copies tensors of a checkpoint that cannot be memory-mapped as they are (PyTorch archives) into one safetensors
/// file of an offload folder, so disk-placed blocks can then be mapped like any safetensors shard. The file is named
/// after a hash of the source tensors and files (sizes, times), so an unchanged source is converted only once.
/// </summary>
/// <remarks>
/// A finished file is used by any number of readers at once without locking. Writing takes an exclusive lock beside
/// the file (a second writer fails with DestinationLocked instead of interleaving), goes to a temporary name, is
/// flushed to disk and renamed into place, so an interrupted conversion (kill, full disk, cancellation) never leaves a
/// file under the final name; the temporary file and lock file a killed writer left are removed by the next writer or
/// reader of that folder. An offload folder
/// inside a folder anyone may write to (the system temp folder) must belong to this user and be writable by no one
/// else, since whoever can replace the converted file decides the weights the model runs with.
/// </remarks>
internal static class OffloadConverter
{
    internal const string FilePrefix = "offload-";
    internal const string TempMarker = ".tmp-";
    internal const string LockSuffix = ".bigmodel-lock";

    public static IReadOnlyDictionary<string, TensorInfo> Convert(IReadOnlyList<TensorInfo> tensors, string folder,
        IProgress<InferenceLoadProgress>? progress, CancellationToken cancel) =>
        Convert(tensors, folder, progress, cancel, checkFreeSpace: true);

    /// <summary>As <see cref="Convert(IReadOnlyList{TensorInfo}, string, IProgress{InferenceLoadProgress}?, CancellationToken)"/>;
    /// without the up-front free-space check, a full disk is met while writing (the disk-full trials).</summary>
    internal static IReadOnlyDictionary<string, TensorInfo> Convert(IReadOnlyList<TensorInfo> tensors, string folder,
        IProgress<InferenceLoadProgress>? progress, CancellationToken cancel, bool checkFreeSpace)
    {
        if (tensors.Count == 0) return new Dictionary<string, TensorInfo>();
        folder = PrepareFolder(folder);
        var target = Path.Combine(folder, FilePrefix + Key(tensors) + ".safetensors");
        if (TryReuse(target, tensors) is { } reused)
        {
            RemoveLeftoversOfDeadWriters(folder, target);
            return reused;
        }

        using (DestinationLock.Acquire(LockPath(target), target))
        {
            RemoveLeftovers(folder, target);
            // The writer that held the lock a moment ago may have finished this very conversion.
            if (TryReuse(target, tensors) is { } finished) return finished;
            Write(tensors, target, progress, cancel, checkFreeSpace);
            return TryReuse(target, tensors)
                ?? throw new BigModelException(BigModelErrorCode.WriteVerificationFailed, "the converted offload file does not hold the tensors written to it.", target);
        }
    }

    /// <summary>The lock file guarding the writing of <paramref name="target"/>.</summary>
    internal static string LockPath(string target) =>
        Path.Combine(Path.GetDirectoryName(target)!, "." + Path.GetFileName(target) + LockSuffix);

    private static void Write(IReadOnlyList<TensorInfo> tensors, string target, IProgress<InferenceLoadProgress>? progress,
        CancellationToken cancel, bool checkFreeSpace)
    {
        var layout = SafetensorsLayout.Create(tensors.Select(t => new TensorSpec(t.Name, t.DType, t.Shape.ToArray())),
            new Dictionary<string, string> { ["format"] = "pt" });
        var folder = Path.GetDirectoryName(target)!;
        if (checkFreeSpace) FreeSpace.Ensure(folder, layout.FileLength, "converting the disk-placed weights");
        var byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var temp = target + TempMarker + System.Convert.ToHexString(RandomNumberGenerator.GetBytes(6)).ToLowerInvariant();
        long total = layout.DataLength, done = 0;
        try
        {
            using (var writer = new SafetensorsWriter(temp, layout))
            {
                var buffer = new byte[TensorData.DefaultChunkBytes];
                int index = 0;
                foreach (var (spec, _) in layout.Tensors)
                {
                    cancel.ThrowIfCancellationRequested();
                    progress?.Report(new InferenceLoadProgress("Converting", spec.Name, index++, layout.Tensors.Count, done, total));
                    TensorData.Read(byName[spec.Name], chunk => writer.Write(chunk), buffer);
                    done += spec.ByteLength;
                }
                // Durable before it gets its final name: after a crash the name holds the whole file or nothing.
                writer.Complete();
            }
            cancel.ThrowIfCancellationRequested();
            progress?.Report(new InferenceLoadProgress("Committing", null, layout.Tensors.Count, layout.Tensors.Count, done, total));
            // Replaces only what failed the reuse check under the lock (a damaged file, or a link planted there).
            File.Move(temp, target, overwrite: true);
            FileSystemNative.FlushDirectory(folder);
        }
        catch (Exception e) when (FileErrors.IsFileSystemError(e))
        {
            TryDelete(temp);
            throw FileErrors.Map(e, target);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>
    /// Creates the folder (private, when its parent is shared) and returns its full path. In a folder anyone may write
    /// to, an existing offload folder must be a real folder of this user that no one else may write to.
    /// </summary>
    private static string PrepareFolder(string folder)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        var parent = Path.GetDirectoryName(full);
        try
        {
            bool shared = parent is not null && IsWritableByOthers(parent);
            if (shared && !OperatingSystem.IsWindows())
                Directory.CreateDirectory(full, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            else
                Directory.CreateDirectory(full);
            if (shared) CheckPrivate(full, parent!);
        }
        catch (Exception e) when (FileErrors.IsFileSystemError(e))
        {
            throw new BigModelException(BigModelErrorCode.IoFailure, $"the offload folder cannot be created: {e.Message}", full, inner: e);
        }
        return full;
    }

    private static bool IsWritableByOthers(string folder)
    {
        if (!Directory.Exists(folder)) return false;
        return FileSystemNative.OwnerAndMode(PathSafety.RealPath(folder)) is { } info && (info.Mode & 0x2) != 0;
    }

    private static void CheckPrivate(string folder, string parent)
    {
        if (FileSystemNative.OwnerAndMode(folder) is not { } info || FileSystemNative.EffectiveUserId() is not uint me) return;
        string? problem = (info.Mode & 0xF000) switch
        {
            0xA000 => "is a symbolic link",
            0x4000 when info.Owner != me => $"belongs to another user (uid {info.Owner})",
            0x4000 when (info.Mode & 0x12) != 0 => "may be written by other users",
            0x4000 => null,
            _ => "is not a folder",
        };
        if (problem is not null)
            throw new BigModelException(BigModelErrorCode.InvalidArgument,
                $"the offload folder {problem}, inside {parent}, which anyone may write to; whoever can replace the converted weights there decides what the model computes. Choose a private offload folder.", folder);
    }


    /// <summary>
    /// After reusing a finished file: the lock file and temporary files a killed writer left, removed under the lock.
    /// A reader finding nothing of the kind writes nothing; one that cannot take the lock (a live writer holds it, or
    /// the folder is read-only) leaves the cleaning to a later run.
    /// </summary>
    private static void RemoveLeftoversOfDeadWriters(string folder, string target)
    {
        try
        {
            if (!File.Exists(LockPath(target)) && !Directory.EnumerateFiles(folder, FilePrefix + "*" + TempMarker + "*").Any()) return;
        }
        catch (Exception e) when (FileErrors.IsFileSystemError(e))
        {
            return;
        }
        try
        {
            using (DestinationLock.Acquire(LockPath(target), target))
                RemoveLeftovers(folder, target);
        }
        catch (BigModelException)
        {
            // Not now; nothing depends on it.
        }
    }

    /// <summary>
    /// Temporary files of dead writers: those of <paramref name="target"/> (whose lock is held here), and those of
    /// other conversions whose lock is free. A live writer's file is never touched.
    /// </summary>
    private static void RemoveLeftovers(string folder, string target)
    {
        List<string> leftovers;
        try
        {
            leftovers = Directory.EnumerateFiles(folder, FilePrefix + "*" + TempMarker + "*").ToList();
        }
        catch (Exception e) when (FileErrors.IsFileSystemError(e))
        {
            return;
        }
        foreach (var group in leftovers.GroupBy(p => Path.Combine(folder, Path.GetFileName(p)[..Path.GetFileName(p).IndexOf(TempMarker, StringComparison.Ordinal)]), StringComparer.Ordinal))
        {
            if (group.Key == target)
            {
                foreach (var file in group) TryDelete(file);
                continue;
            }
            try
            {
                using (DestinationLock.Acquire(LockPath(group.Key), group.Key))
                    foreach (var file in group) TryDelete(file);
            }
            catch (BigModelException)
            {
                // Its writer is alive (or its lock cannot be taken): it is not a leftover.
            }
        }
    }

    private static Dictionary<string, TensorInfo>? TryReuse(string path, IReadOnlyList<TensorInfo> tensors)
    {
        // Only a regular file of the folder itself: never a link to somewhere else, nor a pipe that would block.
        try
        {
            if (!File.Exists(path) || new FileInfo(path).LinkTarget is not null) return null;
        }
        catch (Exception e) when (FileErrors.IsFileSystemError(e))
        {
            return null;
        }
        if (FileSystemNative.KindOf(path) is not (FileSystemNative.FileKind.Regular or FileSystemNative.FileKind.Unknown)) return null;
        SafetensorsHeader header;
        try
        {
            header = SafetensorsHeader.Read(path);
        }
        catch (BigModelException)
        {
            return null;
        }
        var stored = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
        foreach (var t in header.Tensors) stored[t.Name] = t;
        if (stored.Count != tensors.Count) return null;
        var result = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            if (!stored.TryGetValue(t.Name, out var s) || s.DType != t.DType || !s.Shape.SequenceEqual(t.Shape)) return null;
            result[t.Name] = s;
        }
        return result;
    }

    private static string Key(IReadOnlyList<TensorInfo> tensors)
    {
        var text = new StringBuilder();
        foreach (var file in tensors.Select(t => t.File).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
        {
            var info = FileErrors.Guard(file, () => new FileInfo(file) is { Exists: true } f ? f : throw new FileNotFoundException(null, file),
                "a weight file disappeared before its tensors were converted.");
            text.Append(file).Append('|').Append(info.Length.ToString(CultureInfo.InvariantCulture)).Append('|')
                .Append(info.LastWriteTimeUtc.Ticks.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
        foreach (var t in tensors.OrderBy(t => t.Name, StringComparer.Ordinal))
            text.Append(t.Name).Append('|').Append(t.DType).Append('|').Append(t.ShapeText).Append('|')
                .Append(t.DataOffset.ToString(CultureInfo.InvariantCulture)).Append('\n');
        return System.Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..16].ToLowerInvariant();
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (FileErrors.IsFileSystemError(e))
        {
            // A file that cannot be removed now is removed by the next writer.
        }
    }
}
