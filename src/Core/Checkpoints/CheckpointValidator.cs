using System.Buffers.Binary;
using System.Security.Cryptography;
using BigModel.Architectures;
using BigModel.Errors;
using BigModel.IO;
using Microsoft.Win32.SafeHandles;

namespace BigModel.Checkpoints;

/// <summary>
/// Full validation of a checkpoint: everything <see cref="Checkpoint.Open"/> checks (headers, offsets, index,
/// paths), the index's warnings, agreement between the tensors and what config.json implies, and optionally every
/// tensor's values (NaN/infinity) and every file's SHA-256. Problems are collected, not thrown, so one run reports
/// them all.
/// </summary>
public static class CheckpointValidator
{
    public static CheckpointValidationResult Validate(string path, ValidationOptions? options = null, IProgress<ValidationProgress>? progress = null, CancellationToken cancellation = default)
    {
        options ??= new ValidationOptions();
        Checkpoint checkpoint;
        try
        {
            checkpoint = Checkpoint.Open(path);
        }
        catch (BigModelException e)
        {
            return new CheckpointValidationResult
            {
                Path = System.IO.Path.GetFullPath(path),
                Problems = [new ValidationProblem(e.Code, e.Detail, e.File, e.Tensor, IsError: true)],
            };
        }
        return Validate(checkpoint, options, progress, cancellation);
    }

    public static CheckpointValidationResult Validate(Checkpoint checkpoint, ValidationOptions? options = null, IProgress<ValidationProgress>? progress = null, CancellationToken cancellation = default)
    {
        options ??= new ValidationOptions();
        var problems = new List<ValidationProblem>();
        foreach (var warning in checkpoint.Warnings)
            problems.Add(new ValidationProblem(warning.Code, warning.Message, checkpoint.IndexPath, warning.Tensor, IsError: false));
        CompareWithConfig(checkpoint, problems);

        var nonFinite = new List<TensorValueCheck>();
        var hashes = new List<FileHash>();
        long fileBytes = 0;
        if (options.Hash)
        {
            // A file that vanished is reported when its turn comes; the total only drives progress.
            try { fileBytes = checkpoint.FileBytes; }
            catch (BigModelException) { fileBytes = 0; }
        }
        long total = options.Deep ? checkpoint.ByteLength : 0;
        total = fileBytes > long.MaxValue - total ? long.MaxValue : total + fileBytes;
        long done = 0;
        if (options.Deep) ReadValues(checkpoint, options, progress, cancellation, problems, nonFinite, ref done, total);
        if (options.Hash) HashFiles(checkpoint, progress, cancellation, problems, hashes, ref done, total);
        progress?.Report(new ValidationProgress(total, total, null));
        return new CheckpointValidationResult
        {
            Path = checkpoint.Path,
            Format = checkpoint.Format,
            TensorCount = checkpoint.Tensors.Count,
            ParameterCount = checkpoint.ParameterCount,
            ByteLength = checkpoint.ByteLength,
            Deep = options.Deep,
            BytesRead = done,
            Problems = problems,
            NonFiniteTensors = nonFinite,
            Hashes = hashes,
        };
    }

    /// <summary>Counts NaN and infinity in every floating-point tensor, one handle per weight file, progress per chunk.</summary>
    private static void ReadValues(Checkpoint checkpoint, ValidationOptions options, IProgress<ValidationProgress>? progress, CancellationToken cancellation,
        List<ValidationProblem> problems, List<TensorValueCheck> nonFinite, ref long done, long total)
    {
        var buffer = new byte[TensorData.DefaultChunkBytes];
        var handles = new Dictionary<string, SafeFileHandle>(StringComparer.Ordinal);
        long read = done;
        try
        {
            foreach (var tensor in checkpoint.Tensors)
            {
                cancellation.ThrowIfCancellationRequested();
                progress?.Report(new ValidationProgress(read, total, tensor.Name));
                long nan = 0, inf = 0;
                var counter = FiniteCounter.For(tensor.DType);
                try
                {
                    if (!handles.TryGetValue(tensor.File, out var handle))
                        handles[tensor.File] = handle = TensorData.Open(tensor.File);
                    TensorData.Read(handle, tensor, chunk =>
                    {
                        cancellation.ThrowIfCancellationRequested();
                        counter?.Invoke(chunk, ref nan, ref inf);
                        read += chunk.Length;
                        progress?.Report(new ValidationProgress(read, total, tensor.Name));
                    }, buffer);
                }
                catch (BigModelException e)
                {
                    problems.Add(new ValidationProblem(e.Code, e.Detail, e.File, tensor.Name, IsError: true));
                    continue;
                }
                if (nan + inf > 0)
                {
                    nonFinite.Add(new TensorValueCheck(tensor.Name, tensor.DType, tensor.ElementCount, nan, inf));
                    problems.Add(new ValidationProblem(BigModelErrorCode.NonFiniteValues,
                        $"{nan} NaN and {inf} infinite values among {tensor.ElementCount} elements.", tensor.File, tensor.Name, options.FailOnNonFinite));
                }
            }
        }
        finally
        {
            foreach (var handle in handles.Values) handle.Dispose();
            done = read;
        }
    }

    /// <summary>SHA-256 of every weight file, read in 1 MiB chunks so that progress and cancellation are prompt.</summary>
    private static void HashFiles(Checkpoint checkpoint, IProgress<ValidationProgress>? progress, CancellationToken cancellation,
        List<ValidationProblem> problems, List<FileHash> hashes, ref long done, long total)
    {
        var buffer = new byte[HashChunkBytes];
        foreach (var file in checkpoint.Files)
        {
            cancellation.ThrowIfCancellationRequested();
            var name = System.IO.Path.GetFileName(file);
            progress?.Report(new ValidationProgress(done, total, name));
            try
            {
                using var stream = ReadableFile.OpenStream(file, "the weight file", bufferSize: 1, FileOptions.SequentialScan);
                using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                long length = 0;
                while (true)
                {
                    cancellation.ThrowIfCancellationRequested();
                    int n = FileErrors.Guard(file, () => stream.Read(buffer, 0, buffer.Length));
                    if (n == 0) break;
                    hash.AppendData(buffer, 0, n);
                    length += n;
                    done += n;
                    progress?.Report(new ValidationProgress(done, total, name));
                }
                hashes.Add(new FileHash(file, length, Convert.ToHexStringLower(hash.GetHashAndReset())));
            }
            catch (BigModelException e)
            {
                problems.Add(new ValidationProblem(e.Code, e.Detail, e.File ?? file, null, IsError: true));
            }
        }
    }

    private const int HashChunkBytes = 1 << 20;

    /// <summary>
    /// Compares the tensors with those config.json implies (names and shapes). Checkpoints saved from a model with
    /// a head carry the base prefix, bare base models do not: whichever reading matches more names is used.
    /// </summary>
    private static void CompareWithConfig(Checkpoint checkpoint, List<ValidationProblem> problems)
    {
        if (checkpoint.Config is not { } config || checkpoint.Architecture is not { } spec) return;
        IReadOnlyList<TensorTemplate> expected;
        try
        {
            expected = spec.TensorsFromConfig(config);
        }
        catch (BigModelException e)
        {
            problems.Add(new ValidationProblem(e.Code, "config.json cannot be checked against the tensors: " + e.Detail, config.Path, null, IsError: false));
            return;
        }
        var actual = checkpoint.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var prefix = spec.BasePrefix + ".";
        var alternatives = new[]
        {
            expected,
            expected.Select(t => t.Name.StartsWith(prefix, StringComparison.Ordinal) ? t with { Name = t.Name[prefix.Length..] } : t).ToList(),
            expected.Select(t => t.Name.StartsWith(prefix, StringComparison.Ordinal) ? t : t with { Name = prefix + t.Name }).ToList(),
        };
        var best = alternatives.MaxBy(a => a.Count(t => actual.ContainsKey(t.Name)))!;
        if (best.Count(t => actual.ContainsKey(t.Name)) == 0) return; // A layout BigModel does not model; nothing sensible to compare.
        foreach (var t in best)
        {
            if (!actual.TryGetValue(t.Name, out var found))
            {
                problems.Add(new ValidationProblem(BigModelErrorCode.CheckpointDoesNotMatchArchitecture,
                    $"config.json implies tensor '{t.Name}' {Shapes.Format(t.Shape)}, which the checkpoint lacks.", config.Path, t.Name, IsError: false));
            }
            else if (!found.Shape.SequenceEqual(t.Shape))
            {
                problems.Add(new ValidationProblem(BigModelErrorCode.CheckpointDoesNotMatchArchitecture,
                    $"shape {found.ShapeText} differs from {Shapes.Format(t.Shape)} implied by config.json.", found.File, t.Name, IsError: true));
            }
        }
    }

    private delegate void CountNonFinite(ReadOnlySpan<byte> chunk, ref long nan, ref long inf);

    private static class FiniteCounter
    {
        public static CountNonFinite? For(DType dtype) => dtype switch
        {
            DType.F32 => F32,
            DType.F16 => F16,
            DType.BF16 => BF16,
            DType.F64 => F64,
            _ => null,
        };

        private static void F32(ReadOnlySpan<byte> chunk, ref long nan, ref long inf)
        {
            for (int i = 0; i + 4 <= chunk.Length; i += 4)
            {
                uint bits = BinaryPrimitives.ReadUInt32LittleEndian(chunk[i..]);
                if ((bits & 0x7F800000u) != 0x7F800000u) continue;
                if ((bits & 0x007FFFFFu) != 0) nan++; else inf++;
            }
        }

        private static void F64(ReadOnlySpan<byte> chunk, ref long nan, ref long inf)
        {
            for (int i = 0; i + 8 <= chunk.Length; i += 8)
            {
                ulong bits = BinaryPrimitives.ReadUInt64LittleEndian(chunk[i..]);
                if ((bits & 0x7FF0000000000000ul) != 0x7FF0000000000000ul) continue;
                if ((bits & 0x000FFFFFFFFFFFFFul) != 0) nan++; else inf++;
            }
        }

        private static void F16(ReadOnlySpan<byte> chunk, ref long nan, ref long inf) => Half16(chunk, 0x7C00, 0x03FF, ref nan, ref inf);

        private static void BF16(ReadOnlySpan<byte> chunk, ref long nan, ref long inf) => Half16(chunk, 0x7F80, 0x007F, ref nan, ref inf);

        private static void Half16(ReadOnlySpan<byte> chunk, ushort exponent, ushort mantissa, ref long nan, ref long inf)
        {
            for (int i = 0; i + 2 <= chunk.Length; i += 2)
            {
                ushort bits = BinaryPrimitives.ReadUInt16LittleEndian(chunk[i..]);
                if ((bits & exponent) != exponent) continue;
                if ((bits & mantissa) != 0) nan++; else inf++;
            }
        }
    }
}
