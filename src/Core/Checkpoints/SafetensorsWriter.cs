using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using BigModel.Errors;
using Microsoft.Win32.SafeHandles;

namespace BigModel.Checkpoints;

/// <summary>A tensor to be written: name, dtype and shape; its size follows from them.</summary>
public sealed record TensorSpec(string Name, DType DType, long[] Shape)
{
    public long ElementCount => Shape.Aggregate(1L, (a, d) => checked(a * d));

    public long ByteLength => DType.ByteCount(ElementCount)
        ?? throw new BigModelException(BigModelErrorCode.SafetensorsPartialByte, $"{DType} [{string.Join(", ", Shape)}] is not a whole number of bytes.", tensor: Name);
}

/// <summary>
/// The byte layout of a safetensors file, decided before any data is written: tensors sorted the way the reference
/// implementation sorts them (descending dtype alignment, then name), offsets, and the JSON header padded with
/// spaces to a multiple of 8 bytes, serialized exactly as the reference does so files are byte-identical.
/// </summary>
public sealed class SafetensorsLayout
{
    private SafetensorsLayout(byte[] header, IReadOnlyList<(TensorSpec Spec, long Begin)> tensors, long dataLength)
    {
        Header = header;
        Tensors = tensors;
        DataLength = dataLength;
    }

    /// <summary>The padded JSON header (without the 8-byte length prefix).</summary>
    public byte[] Header { get; }

    /// <summary>Tensors in data order with their offsets relative to the data section.</summary>
    public IReadOnlyList<(TensorSpec Spec, long Begin)> Tensors { get; }

    public long DataLength { get; }

    public long FileLength => 8 + Header.Length + DataLength;

    public static SafetensorsLayout Create(IEnumerable<TensorSpec> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var sorted = tensors.OrderByDescending(t => t.DType).ThenBy(t => t.Name, StringComparer.Ordinal).ToList();
        var json = new StringBuilder();
        json.Append('{');
        bool first = true;
        if (metadata is { Count: > 0 })
        {
            json.Append("\"__metadata__\":{");
            bool firstKey = true;
            foreach (var (k, v) in metadata.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                if (!firstKey) json.Append(',');
                AppendString(json, k);
                json.Append(':');
                AppendString(json, v);
                firstKey = false;
            }
            json.Append('}');
            first = false;
        }
        var placed = new List<(TensorSpec, long)>(sorted.Count);
        long offset = 0;
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in sorted)
        {
            if (t.Name == "__metadata__" || !names.Add(t.Name))
                throw new BigModelException(BigModelErrorCode.SafetensorsDuplicateTensor, "the tensor name is used twice or is reserved.", tensor: t.Name);
            long length = t.ByteLength;
            if (!first) json.Append(',');
            AppendString(json, t.Name);
            json.Append(":{\"dtype\":\"").Append(t.DType.SafetensorsName()).Append("\",\"shape\":[");
            json.Append(string.Join(",", t.Shape.Select(d => d.ToString(CultureInfo.InvariantCulture))));
            json.Append("],\"data_offsets\":[").Append(offset.ToString(CultureInfo.InvariantCulture)).Append(',')
                .Append((offset + length).ToString(CultureInfo.InvariantCulture)).Append("]}");
            placed.Add((t, offset));
            offset = checked(offset + length);
            first = false;
        }
        json.Append('}');
        var bytes = Encoding.UTF8.GetBytes(json.ToString());
        int padded = (bytes.Length + 7) / 8 * 8;
        var header = new byte[padded];
        bytes.CopyTo(header, 0);
        header.AsSpan(bytes.Length).Fill((byte)' ');
        return new SafetensorsLayout(header, placed, offset);
    }

    // serde_json's escaping: quote, backslash and control characters only; everything else as raw UTF-8.
    private static void AppendString(StringBuilder json, string value)
    {
        json.Append('"');
        foreach (var c in value)
        {
            switch (c)
            {
                case '"': json.Append("\\\""); break;
                case '\\': json.Append("\\\\"); break;
                case '\n': json.Append("\\n"); break;
                case '\r': json.Append("\\r"); break;
                case '\t': json.Append("\\t"); break;
                case '\b': json.Append("\\b"); break;
                case '\f': json.Append("\\f"); break;
                default:
                    if (c < 0x20) json.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else json.Append(c);
                    break;
            }
        }
        json.Append('"');
    }
}

/// <summary>
/// Streams one safetensors file to disk: the header first, then each tensor's bytes in layout order, in chunks of
/// any size. Memory use is independent of tensor sizes. <see cref="Complete()"/> checks every byte arrived.
/// </summary>
public sealed class SafetensorsWriter : IDisposable
{
    private readonly FileStream _stream;
    private readonly SafetensorsLayout _layout;
    private long _written;
    private bool _completed;
    private bool _kernelCopyUnavailable;

    public SafetensorsWriter(string path, SafetensorsLayout layout, int bufferBytes = 1 << 20)
    {
        Path = path;
        _layout = layout;
        try
        {
            _stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferBytes, FileOptions.SequentialScan);
            // Reserving the full length up front turns a full disk into an immediate, clear failure.
            _stream.SetLength(layout.FileLength);
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)layout.Header.Length);
            _stream.Write(prefix);
            _stream.Write(layout.Header);
        }
        catch (IOException e)
        {
            _stream?.Dispose();
            throw IoError(path, e);
        }
    }

    public string Path { get; }

    /// <summary>Bytes of tensor data written so far.</summary>
    public long DataWritten => _written;

    /// <summary>Appends the next bytes of tensor data (tensors follow each other in <see cref="SafetensorsLayout.Tensors"/> order).</summary>
    public void Write(ReadOnlySpan<byte> data)
    {
        if (_written + data.Length > _layout.DataLength)
            throw new BigModelException(BigModelErrorCode.WriteVerificationFailed, $"more data than the layout's {_layout.DataLength} bytes was written.", Path);
        try
        {
            _stream.Write(data);
        }
        catch (IOException e)
        {
            throw IoError(Path, e);
        }
        _written += data.Length;
    }

    /// <summary>Array form of <see cref="Write(ReadOnlySpan{byte})"/>, for callers without spans (PowerShell).</summary>
    public void Write(byte[] data, int offset, int count) => Write(data.AsSpan(offset, count));

    /// <summary>
    /// Appends <paramref name="length"/> bytes of <paramref name="source"/> starting at <paramref name="offset"/>.
    /// Where the platform can (copy_file_range on Linux) the bytes move inside the kernel, never through this process,
    /// which is what lets a reshard run at the speed of cp; elsewhere they go through <paramref name="buffer"/>.
    /// </summary>
    public void CopyFrom(SafeFileHandle source, long offset, long length, Span<byte> buffer)
    {
        if (_written + length > _layout.DataLength)
            throw new BigModelException(BigModelErrorCode.WriteVerificationFailed, $"more data than the layout's {_layout.DataLength} bytes was written.", Path);
        try
        {
            if (!_kernelCopyUnavailable)
            {
                _stream.Flush();
                long target = _stream.Position;
                while (length > 0)
                {
                    long copied = IO.FileSystemNative.CopyRange(source, ref offset, _stream.SafeFileHandle, ref target, length);
                    if (copied < 0)
                    {
                        _kernelCopyUnavailable = true;
                        break;
                    }
                    if (copied == 0)
                        throw new BigModelException(BigModelErrorCode.IoFailure, "the source file ended before the bytes to copy (was it truncated?).", Path, offset);
                    _written += copied;
                    length -= copied;
                    _stream.Position = target;
                }
            }
            while (length > 0)
            {
                int n = (int)Math.Min(buffer.Length, length);
                int read = RandomAccess.Read(source, buffer[..n], offset);
                if (read == 0)
                    throw new BigModelException(BigModelErrorCode.IoFailure, "the source file ended before the bytes to copy (was it truncated?).", Path, offset);
                Write(buffer[..read]);
                offset += read;
                length -= read;
            }
        }
        catch (IOException e)
        {
            throw IoError(Path, e);
        }
    }

    /// <summary>Flushes to stable storage after checking that the data section is complete.</summary>
    public void Complete() => Complete(flushToDisk: true);

    /// <summary>
    /// Checks that the data section is complete and hands everything to the operating system; with
    /// <paramref name="flushToDisk"/> also waits until it is on stable storage (a caller writing many files may
    /// rather flush them all at the end, so the disk works while the next file is produced).
    /// </summary>
    public void Complete(bool flushToDisk)
    {
        if (_written != _layout.DataLength)
            throw new BigModelException(BigModelErrorCode.WriteVerificationFailed, $"{_written} of {_layout.DataLength} data bytes were written.", Path);
        try
        {
            _stream.Flush(flushToDisk);
        }
        catch (IOException e)
        {
            throw IoError(Path, e);
        }
        _completed = true;
    }

    public bool IsComplete => _completed;

    /// <summary>Whether <see cref="CopyFrom"/> still tries the kernel copy (tests turn it off to cover the portable path).</summary>
    internal bool KernelCopy
    {
        get => !_kernelCopyUnavailable;
        set => _kernelCopyUnavailable = !value;
    }

    public void Dispose() => _stream.Dispose();

    internal static BigModelException IoError(string path, IOException e)
    {
        // ENOSPC (28) and EDQUOT (122) on Unix; ERROR_DISK_FULL (112) / ERROR_HANDLE_DISK_FULL (39) on Windows.
        int code = e.HResult & 0xFFFF;
        bool full = code is 28 or 122 or 112 or 39;
        return new BigModelException(full ? BigModelErrorCode.DiskFull : BigModelErrorCode.IoFailure,
            full ? $"the disk is full: {e.Message}" : e.Message, path, inner: e);
    }
}
