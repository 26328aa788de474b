using System.Text;
using System.Text.Json;
using BigModel.Errors;
using BigModel.IO;

namespace BigModel.Checkpoints;

/// <summary>
/// The parsed and validated header of one safetensors file. Reading it touches only the first 8 + N bytes.
/// Validation follows the reference implementation and trusts nothing: header size limit, UTF-8, JSON shape,
/// known dtypes, overflow-checked shapes, offsets contiguous from zero with no holes or overlaps, byte lengths
/// that match shape and dtype, and a data section that ends exactly at the end of the file.
/// </summary>
public sealed class SafetensorsHeader
{
    private SafetensorsHeader(string path, long headerLength, long fileLength, IReadOnlyList<TensorInfo> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        Path = path;
        HeaderLength = headerLength;
        FileLength = fileLength;
        Tensors = tensors;
        Metadata = metadata;
    }

    public string Path { get; }

    /// <summary>N, the JSON header's length in bytes.</summary>
    public long HeaderLength { get; }

    /// <summary>Offset of the data section: 8 + N.</summary>
    public long DataStart => 8 + HeaderLength;

    public long FileLength { get; }

    /// <summary>Tensors in the order of their data in the file.</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    /// <summary>The free-form <c>__metadata__</c> map, if present.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; }

    /// <summary>Reads and validates the header of the file at <paramref name="path"/>.</summary>
    public static SafetensorsHeader Read(string path, SafetensorsLimits? limits = null)
    {
        limits ??= SafetensorsLimits.Default;
        using var stream = ReadableFile.OpenStream(path, "the safetensors file", bufferSize: 1);
        try
        {
            long fileLength = stream.Length;
            if (fileLength < 8)
                throw new BigModelException(BigModelErrorCode.SafetensorsFileTooSmall, $"the file is {fileLength} bytes; a safetensors file has at least an 8-byte header length.", path);
            Span<byte> lengthBytes = stackalloc byte[8];
            stream.ReadExactly(lengthBytes);
            ulong n = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            if (n > (ulong)limits.MaxHeaderBytes)
                throw new BigModelException(BigModelErrorCode.SafetensorsHeaderTooLarge, $"the header claims {n} bytes; the limit is {limits.MaxHeaderBytes}.", path, 0);
            if ((long)n > fileLength - 8)
                throw new BigModelException(BigModelErrorCode.SafetensorsHeaderTruncated, $"the header claims {n} bytes but only {fileLength - 8} follow the length field.", path, 0);
            var header = new byte[(int)n];
            stream.ReadExactly(header);
            return Parse(header, fileLength, path, limits);
        }
        catch (EndOfStreamException e)
        {
            throw new BigModelException(BigModelErrorCode.SafetensorsHeaderTruncated, "the file ended inside the header.", path, inner: e);
        }
        catch (Exception e) when (FileErrors.IsFileSystemError(e))
        {
            throw FileErrors.Map(e, path, "the file does not exist.");
        }
    }

    /// <summary>Validates a header already in memory: <paramref name="json"/> is the N header bytes.</summary>
    public static SafetensorsHeader Parse(ReadOnlySpan<byte> json, long fileLength, string path, SafetensorsLimits? limits = null)
    {
        limits ??= SafetensorsLimits.Default;
        if (!System.Text.Unicode.Utf8.IsValid(json))
            throw new BigModelException(BigModelErrorCode.SafetensorsHeaderNotUtf8, "the header is not valid UTF-8.", path, 8);
        if (json.Length == 0 || json[0] != (byte)'{')
            throw new BigModelException(BigModelErrorCode.SafetensorsHeaderStartsBadly, "the header must start with '{'.", path, 8);

        var entries = new List<Entry>();
        Dictionary<string, string>? metadata = null;
        var names = new HashSet<string>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 8, CommentHandling = JsonCommentHandling.Disallow });
        try
        {
            Expect(ref reader, JsonTokenType.StartObject, path);
            while (true)
            {
                Next(ref reader, path);
                if (reader.TokenType == JsonTokenType.EndObject) break;
                long at = 8 + reader.TokenStartIndex;
                var name = JsonStrings.Read(ref reader, BigModelErrorCode.SafetensorsHeaderNotJson, path, 8);
                if (!names.Add(name))
                    throw new BigModelException(BigModelErrorCode.SafetensorsDuplicateTensor, "the name appears twice in the header.", path, at, name);
                if (name == "__metadata__")
                {
                    metadata = ReadMetadata(ref reader, path, limits);
                    continue;
                }
                if (entries.Count >= limits.MaxTensors)
                    throw new BigModelException(BigModelErrorCode.SafetensorsTooManyTensors, $"the header declares more than {limits.MaxTensors} tensors.", path, at);
                entries.Add(ReadEntry(ref reader, name, at, path, limits));
            }
            if (reader.Read())
                throw new BigModelException(BigModelErrorCode.SafetensorsHeaderNotJson, "unexpected content after the header object.", path, 8 + reader.TokenStartIndex);
        }
        catch (JsonException e)
        {
            throw new BigModelException(BigModelErrorCode.SafetensorsHeaderNotJson, $"the header is not valid JSON: {e.Message}", path, 8 + reader.BytesConsumed, inner: e);
        }

        // Offsets must tile [0, data length) exactly, in any declaration order.
        entries.Sort(static (a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        long dataStart = 8 + json.Length;
        long expected = 0;
        var tensors = new TensorInfo[entries.Count];
        for (int i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            if (e.Begin != expected || e.End < e.Begin)
                throw new BigModelException(BigModelErrorCode.SafetensorsInvalidOffsets,
                    e.Begin > expected ? $"data_offsets [{e.Begin}, {e.End}] leave a hole: the previous tensor ends at {expected}."
                    : $"data_offsets [{e.Begin}, {e.End}] overlap or run backwards (expected to start at {expected}).",
                    path, e.HeaderOffset, e.Name);
            long length = e.End - e.Begin;
            if (length != e.Bytes)
                throw new BigModelException(BigModelErrorCode.SafetensorsTensorSizeMismatch,
                    $"data_offsets span {length} bytes but {e.DType} {Shapes.Format(e.Shape)} needs {e.Bytes}.", path, e.HeaderOffset, e.Name);
            expected = e.End;
            tensors[i] = new TensorInfo(e.Name, e.DType, e.Shape, length, path, dataStart + e.Begin);
        }
        if (dataStart + expected != fileLength)
            throw new BigModelException(BigModelErrorCode.SafetensorsDataLengthMismatch,
                $"the tensors cover {expected} data bytes, so the file should be {dataStart + expected} bytes long, but it is {fileLength}.",
                path, Math.Min(dataStart + expected, fileLength));
        return new SafetensorsHeader(path, json.Length, fileLength, tensors, metadata);
    }

    private readonly record struct Entry(string Name, DType DType, long[] Shape, long Bytes, long Begin, long End, long HeaderOffset);

    private static Entry ReadEntry(ref Utf8JsonReader reader, string name, long at, string path, SafetensorsLimits limits)
    {
        Next(ref reader, path);
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Invalid("each tensor entry must be an object with dtype, shape and data_offsets.", path, at, name);
        DType? dtype = null;
        long[]? shape = null;
        long[]? offsets = null;
        while (true)
        {
            Next(ref reader, path);
            if (reader.TokenType == JsonTokenType.EndObject) break;
            var key = JsonStrings.Read(ref reader, BigModelErrorCode.SafetensorsHeaderNotJson, path, 8);
            Next(ref reader, path);
            switch (key)
            {
                case "dtype":
                    if (reader.TokenType != JsonTokenType.String) throw Invalid("dtype must be a string.", path, at, name);
                    var text = JsonStrings.Read(ref reader, BigModelErrorCode.SafetensorsHeaderNotJson, path, 8);
                    if (!DTypes.TryParseSafetensors(text, out var d))
                        throw new BigModelException(BigModelErrorCode.SafetensorsUnknownDType, $"unknown dtype '{Excerpt.Of(text)}'.", path, at, name);
                    dtype = d;
                    break;
                case "shape":
                    shape = ReadIntegers(ref reader, path, at, name, "shape", limits.MaxRank, BigModelErrorCode.SafetensorsInvalidShape);
                    break;
                case "data_offsets":
                    offsets = ReadIntegers(ref reader, path, at, name, "data_offsets", 2, BigModelErrorCode.SafetensorsInvalidOffsets);
                    if (offsets.Length != 2)
                        throw new BigModelException(BigModelErrorCode.SafetensorsInvalidOffsets, "data_offsets must hold exactly two numbers.", path, at, name);
                    break;
                default:
                    reader.Skip();
                    break;
            }
        }
        if (dtype is null || shape is null || offsets is null)
            throw Invalid($"the entry lacks {(dtype is null ? "dtype" : shape is null ? "shape" : "data_offsets")}.", path, at, name);

        long elements = 1;
        foreach (var dim in shape)
        {
            if (!TryMultiply(elements, dim, out elements))
                throw new BigModelException(BigModelErrorCode.SafetensorsInvalidShape, $"shape {Shapes.Format(shape)} overflows the element count.", path, at, name);
        }
        if (!TryMultiply(elements, dtype.Value.Bits(), out long bits))
            throw new BigModelException(BigModelErrorCode.SafetensorsInvalidShape, $"shape {Shapes.Format(shape)} overflows the byte count.", path, at, name);
        if (bits % 8 != 0)
            throw new BigModelException(BigModelErrorCode.SafetensorsPartialByte, $"{dtype} {Shapes.Format(shape)} does not fill a whole number of bytes.", path, at, name);
        long bytes = bits / 8;
        return new Entry(name, dtype.Value, shape, bytes, offsets[0], offsets[1], at);
    }

    private static bool TryMultiply(long a, long b, out long result)
    {
        try { result = checked(a * b); return true; }
        catch (OverflowException) { result = 0; return false; }
    }

    private static long[] ReadIntegers(ref Utf8JsonReader reader, string path, long at, string name, string what, int max, BigModelErrorCode code)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
            throw new BigModelException(code, $"{what} must be an array of non-negative integers.", path, at, name);
        var values = new List<long>();
        while (true)
        {
            Next(ref reader, path);
            if (reader.TokenType == JsonTokenType.EndArray) break;
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out var v) || v < 0)
                throw new BigModelException(code, $"{what} must be an array of non-negative integers that fit in 64 bits.", path, at, name);
            if (values.Count >= max)
                throw new BigModelException(what == "shape" ? BigModelErrorCode.SafetensorsRankTooLarge : code,
                    $"{what} has more than {max} entries.", path, at, name);
            values.Add(v);
        }
        return values.ToArray();
    }

    private static Dictionary<string, string> ReadMetadata(ref Utf8JsonReader reader, string path, SafetensorsLimits limits)
    {
        Next(ref reader, path);
        long at = 8 + reader.TokenStartIndex;
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new BigModelException(BigModelErrorCode.SafetensorsInvalidMetadata, "__metadata__ must be an object of strings.", path, at);
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        while (true)
        {
            Next(ref reader, path);
            if (reader.TokenType == JsonTokenType.EndObject) return map;
            var key = JsonStrings.Read(ref reader, BigModelErrorCode.SafetensorsHeaderNotJson, path, 8);
            Next(ref reader, path);
            if (reader.TokenType != JsonTokenType.String)
                throw new BigModelException(BigModelErrorCode.SafetensorsInvalidMetadata, $"__metadata__ value of '{Excerpt.Of(key)}' must be a string.", path, 8 + reader.TokenStartIndex);
            if (map.Count >= limits.MaxMetadataEntries)
                throw new BigModelException(BigModelErrorCode.SafetensorsInvalidMetadata, $"__metadata__ has more than {limits.MaxMetadataEntries} entries.", path, at);
            if (!map.TryAdd(key, JsonStrings.Read(ref reader, BigModelErrorCode.SafetensorsHeaderNotJson, path, 8)))
                throw new BigModelException(BigModelErrorCode.SafetensorsInvalidMetadata, $"__metadata__ key '{Excerpt.Of(key)}' appears twice.", path, at);
        }
    }

    private static void Expect(ref Utf8JsonReader reader, JsonTokenType type, string path)
    {
        Next(ref reader, path);
        if (reader.TokenType != type)
            throw new BigModelException(BigModelErrorCode.SafetensorsHeaderNotObject, "the header must be a JSON object.", path, 8 + reader.TokenStartIndex);
    }

    private static void Next(ref Utf8JsonReader reader, string path)
    {
        if (!reader.Read())
            throw new BigModelException(BigModelErrorCode.SafetensorsHeaderNotJson, "the header JSON ends early.", path, 8 + reader.BytesConsumed);
    }

    private static BigModelException Invalid(string message, string path, long at, string name) =>
        new(BigModelErrorCode.SafetensorsInvalidTensorEntry, message, path, at, name);

}
