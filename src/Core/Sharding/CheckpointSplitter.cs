using System.Diagnostics;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.IO;
using Microsoft.Win32.SafeHandles;

namespace BigModel.Sharding;

/// <summary>
/// Reshards any checkpoint into size-limited safetensors files laid out exactly as transformers' save_pretrained
/// writes them, streaming: tensors are copied (and converted, with a dtype) in bounded chunks, so memory use does not
/// depend on the model's size. The output is written beside the destination, verified, and only then moved into
/// place, so an interrupted run never leaves a destination that looks complete but is not.
/// </summary>
public static class CheckpointSplitter
{
    /// <summary>Smallest and largest accepted <see cref="SplitOptions.ChunkBytes"/>.</summary>
    public const int MinChunkBytes = 64 << 10, MaxChunkBytes = 256 << 20;

    private const long KernelCopyPiece = 64L << 20;

    private static readonly IReadOnlyDictionary<string, string> ShardMetadata = new Dictionary<string, string> { ["format"] = "pt" };

    /// <summary>Plans and runs a split in one call.</summary>
    public static SplitResult Split(Checkpoint source, string destination, SplitOptions options,
        IProgress<SplitProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Execute(Plan(source, destination, options), progress, cancellationToken);

    /// <summary>
    /// Decides the shards, sizes, index and copied files without writing anything. Fails as the split itself would
    /// for bad options, a destination inside the source, or an existing destination without Force.
    /// </summary>
    public static SplitPlan Plan(Checkpoint source, string destination, SplitOptions options)
    {
        try
        {
            return CreatePlan(source, destination, options);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw StagedDirectory.IoError(destination, e);
        }
    }

    private static SplitPlan CreatePlan(Checkpoint source, string destination, SplitOptions options)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(options);
        if (options.MaxShardSize <= 0)
            throw new BigModelException(BigModelErrorCode.InvalidSize, $"the maximum shard size must be at least one byte, not {options.MaxShardSize}.");
        if (options.DType is DType target && !DTypeConverter.IsTarget(target))
            throw new BigModelException(BigModelErrorCode.InvalidDType, $"cannot convert a checkpoint to {target.TorchName()}; use float32, float16 or bfloat16.");
        if (options.ChunkBytes is < MinChunkBytes or > MaxChunkBytes)
            throw new BigModelException(BigModelErrorCode.InvalidArgument, $"the chunk size must be between {MinChunkBytes} and {MaxChunkBytes} bytes, not {options.ChunkBytes}.");
        if (string.IsNullOrWhiteSpace(destination))
            throw new BigModelException(BigModelErrorCode.InvalidArgument, "the destination folder is empty.");
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(destination));
        CheckDestinationPlacement(source, full);
        if (source.Tensors.Count == 0)
            throw new BigModelException(BigModelErrorCode.InvalidArgument, "the checkpoint holds no tensors; there is nothing to split.", source.Path);

        var (tensors, aliases) = DropAliases(source.Tensors);
        var planned = tensors.Select(t =>
        {
            var dtype = DTypeConverter.ConvertedType(t.DType, options.DType);
            return new PlannedTensor(t, dtype, new TensorSpec(t.Name, dtype, [.. t.Shape]).ByteLength);
        }).ToList();
        var byName = planned.ToDictionary(p => p.Name, StringComparer.Ordinal);
        var split = ShardPlanner.Split(planned.Select(p => new ShardCandidate(p.Name, p.ByteLength)), options.MaxShardSize);
        var shards = new List<PlannedShard>(split.Shards.Count);
        for (int i = 0; i < split.Shards.Count; i++)
        {
            var members = split.Shards[i].Tensors.Select(n => byName[n]).ToList();
            var layout = SafetensorsLayout.Create(members.Select(m => new TensorSpec(m.Name, m.DType, [.. m.Shape])), ShardMetadata);
            shards.Add(new PlannedShard(i + 1, split.Shards[i].FileName, members, layout));
        }
        var index = split.IsSharded ? ShardIndexJson.SerializeUtf8(split.TotalSize, split.TensorToFile) : null;

        var warnings = new List<string>();
        var companions = CompanionFiles.Find(source.Directory, options.DType is not null, warnings);
        if (options.DType is DType newType)
            companions = companions.Select(c => c.UpdatesDType ? c with { Length = RewrittenConfig(c.SourcePath, newType).LongLength } : c).ToList();

        bool exists = HasContent(full);
        if (exists && !options.Force)
            throw new BigModelException(BigModelErrorCode.DestinationExists,
                "the destination already exists; choose another folder or allow replacing it (-Force).", full);
        return new SplitPlan(source, full, options, shards, split.TotalSize, index, companions, aliases, warnings, exists);
    }

    /// <summary>
    /// Writes the planned output. Progress is reported on the calling thread (at phase changes and about ten times a
    /// second while copying). Cancellation stops at the next chunk and throws <see cref="OperationCanceledException"/>;
    /// once the new folder is moved into place the split is complete and is no longer cancelled.
    /// </summary>
    public static SplitResult Execute(SplitPlan plan, IProgress<SplitProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(plan);
        var reporter = new ProgressReporter(progress, plan);
        cancellationToken.ThrowIfCancellationRequested();
        reporter.Phase(SplitPhase.Preparing);
        using var staged = StagedDirectory.Begin(plan.Destination, plan.Options.Force);
        var shardFiles = plan.Shards.Select(s => Path.Combine(plan.Destination, s.FileName)).ToList();
        var copied = new List<string>();
        try
        {
            if (plan.Options.CheckFreeSpace) FreeSpace.Ensure(staged.Parent, plan.OutputBytes, "the output");
            WriteShards(plan, staged.StagingPath, reporter, cancellationToken);
            if (plan.IndexBytes is { } index)
            {
                cancellationToken.ThrowIfCancellationRequested();
                reporter.Phase(SplitPhase.WritingIndex, file: ShardIndexJson.FileName);
                WriteDurably(Path.Combine(staged.StagingPath, ShardIndexJson.FileName), index);
            }
            reporter.Phase(SplitPhase.CopyingFiles);
            var written = CopyCompanions(plan, staged.StagingPath, reporter, cancellationToken);
            copied.AddRange(written.Select(c => Path.Combine(plan.Destination, c.RelativePath.Replace('/', Path.DirectorySeparatorChar))));
            cancellationToken.ThrowIfCancellationRequested();
            reporter.Phase(SplitPhase.Verifying);
            Verify(plan, staged.StagingPath, written);
            cancellationToken.ThrowIfCancellationRequested();
            reporter.Phase(SplitPhase.Committing);
            staged.Commit();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw StagedDirectory.IoError(staged.StagingPath, e);
        }
        var checkpoint = Checkpoint.Open(plan.Destination);
        var result = new SplitResult(plan, checkpoint, shardFiles,
            plan.IsSharded ? Path.Combine(plan.Destination, ShardIndexJson.FileName) : null, copied,
            reporter.Elapsed, staged.ReplacesExisting, staged.Recovered);
        reporter.Phase(SplitPhase.Completed);
        return result;
    }

    private static void WriteShards(SplitPlan plan, string folder, ProgressReporter reporter, CancellationToken cancellationToken)
    {
        var buffers = new Buffers(plan);
        var handles = new Dictionary<string, SafeFileHandle>(StringComparer.Ordinal);
        // Each finished shard is flushed to disk on a background thread while the next one is produced, so the disk
        // and the copy work at the same time; everything is on disk before this method returns.
        var flushing = Task.CompletedTask;
        bool failed = true;
        try
        {
            foreach (var shard in plan.Shards)
            {
                reporter.Phase(SplitPhase.WritingShards, shard.Number, shard.FileName);
                var path = Path.Combine(folder, shard.FileName);
                WriteShard(shard, path, handles, buffers, reporter, cancellationToken);
                flushing = flushing.ContinueWith(previous =>
                {
                    previous.GetAwaiter().GetResult();
                    FlushToDisk(path);
                }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
            }
            failed = false;
        }
        finally
        {
            foreach (var h in handles.Values) h.Dispose();
            // Never leave a flush running against files about to be deleted; its error matters only on success.
            try
            {
                flushing.GetAwaiter().GetResult();
            }
            catch (Exception) when (failed)
            {
            }
        }
    }

    private static void WriteShard(PlannedShard shard, string path, Dictionary<string, SafeFileHandle> handles, Buffers buffers,
        ProgressReporter reporter, CancellationToken cancellationToken)
    {
        var byName = shard.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        using var writer = new SafetensorsWriter(path, shard.Layout, bufferBytes: 1);
        foreach (var (spec, _) in shard.Layout.Tensors)
        {
            var tensor = byName[spec.Name];
            var source = tensor.Source;
            var handle = Handle(handles, source.File);
            reporter.Tensor(tensor.Name);
            long before = writer.DataWritten;
            if (source.IsContiguous && !tensor.IsConverted)
            {
                // Bytes that need no change are copied file to file, in the kernel where possible, in pieces large
                // enough to cost few calls and small enough to notice cancellation promptly.
                for (long done = 0; done < source.ByteLength;)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    long n = Math.Min(KernelCopyPiece, source.ByteLength - done);
                    writer.CopyFrom(handle, source.DataOffset + done, n, buffers.Read);
                    done += n;
                    reporter.Data(n);
                }
            }
            else
            {
                TensorData.Read(handle, source, data =>
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    if (tensor.IsConverted)
                    {
                        int n = DTypeConverter.Convert(source.DType, tensor.DType, data, buffers.Converted);
                        writer.Write(buffers.Converted.AsSpan(0, n));
                        reporter.Data(n);
                    }
                    else
                    {
                        writer.Write(data);
                        reporter.Data(data.Length);
                    }
                }, buffers.Read);
            }
            if (writer.DataWritten - before != tensor.ByteLength)
                throw new BigModelException(BigModelErrorCode.WriteVerificationFailed,
                    $"{writer.DataWritten - before} bytes were written for a tensor of {tensor.ByteLength}.", writer.Path, tensor: tensor.Name);
        }
        writer.Complete(flushToDisk: false);
    }

    /// <summary>The only sizeable memory a split uses: one read chunk and, when converting, one output chunk.</summary>
    private sealed class Buffers(SplitPlan plan)
    {
        private byte[]? _converted;

        public byte[] Read { get; } = GC.AllocateUninitializedArray<byte>(plan.Options.ChunkBytes);

        // Widening F16/BF16 to F32 doubles the bytes; every other conversion shrinks or keeps them.
        public byte[] Converted => _converted ??= GC.AllocateUninitializedArray<byte>(2 * plan.Options.ChunkBytes);
    }

    private static void FlushToDisk(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.None, 1);
        stream.Flush(flushToDisk: true);
    }

    private static SafeFileHandle Handle(Dictionary<string, SafeFileHandle> handles, string file)
    {
        if (handles.TryGetValue(file, out var handle)) return handle;
        try
        {
            // Sequential hints let the kernel read ahead; TensorData.Open's random-access hint would turn that off.
            handle = File.OpenHandle(file, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        }
        catch (FileNotFoundException e)
        {
            throw new BigModelException(BigModelErrorCode.PathNotFound, "the weight file disappeared.", file, inner: e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, file, inner: e);
        }
        handles[file] = handle;
        return handle;
    }

    private static List<CompanionFile> CopyCompanions(SplitPlan plan, string folder, ProgressReporter reporter, CancellationToken cancellationToken)
    {
        var written = new List<CompanionFile>(plan.CompanionFiles.Count);
        foreach (var companion in plan.CompanionFiles)
        {
            cancellationToken.ThrowIfCancellationRequested();
            reporter.Phase(SplitPhase.CopyingFiles, file: companion.RelativePath);
            var target = Path.Combine(folder, companion.RelativePath.Replace('/', Path.DirectorySeparatorChar));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            long length;
            if (companion.UpdatesDType && plan.Options.DType is DType dtype)
            {
                var bytes = RewrittenConfig(companion.SourcePath, dtype);
                WriteDurably(target, bytes);
                length = bytes.LongLength;
            }
            else
            {
                length = CopyDurably(companion.SourcePath, target, plan.Options.ChunkBytes, cancellationToken);
            }
            written.Add(companion with { Length = length });
        }
        return written;
    }

    private static byte[] RewrittenConfig(string path, DType dtype)
    {
        var info = new FileInfo(path);
        if (info.Length > Architectures.ModelConfig.MaxConfigBytes)
            throw new BigModelException(BigModelErrorCode.ConfigInvalidValue, $"config is {info.Length} bytes; the limit is {Architectures.ModelConfig.MaxConfigBytes}.", path);
        try
        {
            return ConfigDTypeRewriter.Rewrite(File.ReadAllBytes(path), dtype, path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, path, inner: e);
        }
    }

    private static void WriteDurably(string path, byte[] bytes)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }

    private static long CopyDurably(string source, string target, int chunk, CancellationToken cancellationToken)
    {
        using var input = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        using var output = new FileStream(target, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1);
        var buffer = new byte[Math.Min(chunk, (int)Math.Clamp(input.Length, 4096, chunk))];
        long total = 0;
        int n;
        while ((n = input.Read(buffer)) > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            output.Write(buffer, 0, n);
            total += n;
        }
        output.Flush(flushToDisk: true);
        return total;
    }

    /// <summary>Reads back what was written: the checkpoint must open cleanly and hold exactly the planned tensors and files.</summary>
    private static void Verify(SplitPlan plan, string folder, IReadOnlyList<CompanionFile> companions)
    {
        Checkpoint written;
        try
        {
            written = Checkpoint.Open(folder);
        }
        catch (BigModelException e)
        {
            throw new BigModelException(BigModelErrorCode.WriteVerificationFailed, $"the written checkpoint does not read back: {e.Message}", folder, inner: e);
        }
        if (written.Warnings.Count > 0)
            throw Failed(folder, $"the written checkpoint is inconsistent: {written.Warnings[0]}");
        if (written.Files.Count != plan.Shards.Count)
            throw Failed(folder, $"{written.Files.Count} weight files read back; {plan.Shards.Count} were written.");
        foreach (var shard in plan.Shards)
        {
            var path = Path.Combine(folder, shard.FileName);
            var length = new FileInfo(path).Length;
            if (length != shard.FileBytes)
                throw Failed(path, $"the file is {length} bytes; {shard.FileBytes} were planned.");
            foreach (var tensor in shard.Tensors)
            {
                var back = written.Find(tensor.Name) ?? throw Failed(path, "a planned tensor is missing.", tensor.Name);
                if (back.DType != tensor.DType || !back.Shape.SequenceEqual(tensor.Shape) || back.ByteLength != tensor.ByteLength
                    || !string.Equals(Path.GetFileName(back.File), shard.FileName, StringComparison.Ordinal))
                    throw Failed(path, $"read back as {back.DType} {back.ShapeText} in {Path.GetFileName(back.File)}; planned {tensor.DType} {tensor.Source.ShapeText} in {shard.FileName}.", tensor.Name);
            }
        }
        if (written.Tensors.Count != plan.TensorCount)
            throw Failed(folder, $"{written.Tensors.Count} tensors read back; {plan.TensorCount} were written.");
        if (plan.IsSharded && written.DeclaredTotalSize != plan.TotalSize)
            throw Failed(folder, $"the index declares total_size {written.DeclaredTotalSize}; {plan.TotalSize} was written.");
        foreach (var companion in companions)
        {
            var path = Path.Combine(folder, companion.RelativePath.Replace('/', Path.DirectorySeparatorChar));
            if (!File.Exists(path) || new FileInfo(path).Length != companion.Length)
                throw Failed(path, $"the copied file is missing or not {companion.Length} bytes.");
        }
    }

    private static BigModelException Failed(string file, string message, string? tensor = null) =>
        new(BigModelErrorCode.WriteVerificationFailed, message, file, tensor: tensor);


    /// <summary>Refuses destinations inside the source folder (or equal to it), and folders that contain the source.</summary>
    private static void CheckDestinationPlacement(Checkpoint source, string destination)
    {
        var sourceFolder = Path.TrimEndingDirectorySeparator(Path.GetFullPath(source.Directory));
        var pairs = new[] { (sourceFolder, destination), (PathSafety.RealPath(sourceFolder), PathSafety.RealPath(destination)) };
        foreach (var (src, dst) in pairs)
        {
            if (PathSafety.IsUnder(src, dst))
                throw new BigModelException(BigModelErrorCode.DestinationInsideSource,
                    $"the destination lies inside the source folder {sourceFolder}; write the split elsewhere.", destination);
            if (PathSafety.IsUnder(dst, src))
                throw new BigModelException(BigModelErrorCode.SourceInsideDestination,
                    $"the source {sourceFolder} lies inside the destination; replacing the destination would destroy it.", destination);
        }
    }

    private static bool HasContent(string path)
    {
        if (Directory.Exists(path)) return Directory.EnumerateFileSystemEntries(path).Any();
        return File.Exists(path) || new FileInfo(path).LinkTarget is not null;
    }

    /// <summary>
    /// Keeps one name for each set of tensors viewing exactly the same bytes (PyTorch archives store tied weights once
    /// under several names; safetensors cannot). The name kept is the first in forward order, so for tied embeddings
    /// the input embedding stays and the output head goes, as transformers drops its _tied_weights_keys.
    /// </summary>
    internal static (List<TensorInfo> Kept, List<TensorAlias> Aliases) DropAliases(IReadOnlyList<TensorInfo> tensors)
    {
        var kept = new List<TensorInfo>(tensors.Count);
        var aliases = new List<TensorAlias>();
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            if (t.ByteLength == 0)
            {
                kept.Add(t);
                continue;
            }
            var key = string.Join('|', t.File, t.DataOffset, t.ByteLength, t.DType, string.Join(',', t.Shape),
                t.Strides is null ? "-" : string.Join(',', t.Strides));
            if (seen.TryGetValue(key, out var first))
            {
                aliases.Add(new TensorAlias(t.Name, first));
                continue;
            }
            seen[key] = t.Name;
            kept.Add(t);
        }
        return (kept, aliases);
    }

    /// <summary>Turns byte counts into throttled <see cref="SplitProgress"/> reports.</summary>
    private sealed class ProgressReporter(IProgress<SplitProgress>? sink, SplitPlan plan)
    {
        private static readonly long Interval = Stopwatch.Frequency / 10;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private long _done, _lastReport, _dataStarted = -1;
        private SplitPhase _phase;
        private int _shard;
        private string? _file, _tensor;

        public TimeSpan Elapsed => _clock.Elapsed;

        public void Phase(SplitPhase phase, int shard = -1, string? file = null)
        {
            _phase = phase;
            if (shard >= 0) _shard = shard;
            _file = file;
            _tensor = null;
            if (phase == SplitPhase.WritingShards && _dataStarted < 0) _dataStarted = _clock.ElapsedTicks;
            Report();
        }

        public void Tensor(string name) => _tensor = name;

        public void Data(long bytes)
        {
            _done += bytes;
            if (sink is not null && _clock.ElapsedTicks - _lastReport >= Interval) Report();
        }

        private void Report()
        {
            if (sink is null) return;
            _lastReport = _clock.ElapsedTicks;
            double seconds = _dataStarted < 0 ? 0 : (double)(_clock.ElapsedTicks - _dataStarted) / Stopwatch.Frequency;
            double rate = seconds > 0 ? _done / seconds : 0;
            sink.Report(new SplitProgress(_phase, _done, plan.TotalSize, rate, _clock.Elapsed, _shard, plan.Shards.Count, _file, _tensor));
        }
    }
}
