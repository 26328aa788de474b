using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using BigModel.Errors;
using BigModel.IO;
using Microsoft.Win32.SafeHandles;

namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// The central directory of a zip archive, read without trusting it: the end record is searched only where the
/// format allows it (the last 64 KiB + 22 bytes), ZIP64 records and extra fields are honoured, every entry's local
/// header is checked against its central record, and entries must lie inside the file, before the central
/// directory, without overlapping. Names that could escape a folder are refused. Nothing is decompressed here.
/// </summary>
internal sealed class ZipArchiveIndex
{
    private const uint LocalHeaderSignature = 0x04034b50;
    private const uint CentralHeaderSignature = 0x02014b50;
    private const uint EndSignature = 0x06054b50;
    private const uint Zip64EndSignature = 0x06064b50;
    private const uint Zip64LocatorSignature = 0x07064b50;
    private const int EndRecordSize = 22;
    private const int Zip64LocatorSize = 20;
    private const int Zip64EndRecordSize = 56;
    private const int CentralHeaderSize = 46;
    private const int LocalHeaderSize = 30;
    private const int MaxCommentLength = 0xFFFF;

    /// <summary>Deflate cannot expand data by more than about 1032:1; a larger declared ratio is a lie or a bomb.</summary>
    private const long MaxDeflateRatio = 1100;

    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    private readonly Dictionary<string, ZipEntry> _byName;

    private ZipArchiveIndex(string path, long fileLength, long centralDirectoryOffset, List<ZipEntry> entries)
    {
        Path = path;
        FileLength = fileLength;
        CentralDirectoryOffset = centralDirectoryOffset;
        Entries = entries;
        _byName = new Dictionary<string, ZipEntry>(entries.Count, StringComparer.Ordinal);
        foreach (var e in entries)
        {
            if (!_byName.TryAdd(e.Name, e))
                throw Corrupt($"the entry '{Show(e.Name)}' appears twice in the central directory.");
        }
    }

    public string Path { get; }

    public long FileLength { get; }

    public long CentralDirectoryOffset { get; }

    /// <summary>Entries in central-directory order.</summary>
    public IReadOnlyList<ZipEntry> Entries { get; }

    public ZipEntry? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>True when <paramref name="head"/> (the file's first bytes) starts like a zip archive.</summary>
    public static bool LooksLikeZip(ReadOnlySpan<byte> head) =>
        head.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(head) is LocalHeaderSignature or EndSignature or Zip64EndSignature;

    public static ZipArchiveIndex Read(SafeFileHandle handle, long fileLength, string path, PyTorchLimits limits)
    {
        var (entryCount, cdSize, cdOffset) = ReadEndRecords(handle, fileLength, path);
        if (cdSize > limits.MaxCentralDirectoryBytes)
            throw new BigModelException(BigModelErrorCode.PickleTooLarge,
                $"the central directory is {cdSize} bytes; the limit is {limits.MaxCentralDirectoryBytes}.", path, cdOffset);
        if (entryCount > (ulong)limits.MaxZipEntries)
            throw new BigModelException(BigModelErrorCode.PickleTooLarge,
                $"the archive declares {entryCount} entries; the limit is {limits.MaxZipEntries}.", path, cdOffset);
        if (entryCount * CentralHeaderSize > (ulong)cdSize)
            throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                $"the archive declares {entryCount} entries but its central directory of {cdSize} bytes cannot hold them.", path, cdOffset);

        var cd = new byte[cdSize];
        ReadAt(handle, cd, cdOffset, path, "central directory");
        var entries = new List<ZipEntry>((int)entryCount);
        var centralNames = new List<byte[]>((int)entryCount);
        int pos = 0;
        for (ulong i = 0; i < entryCount; i++)
        {
            var entryOffset = cdOffset + pos;
            if (cd.Length - pos < CentralHeaderSize || BinaryPrimitives.ReadUInt32LittleEndian(cd.AsSpan(pos)) != CentralHeaderSignature)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, $"central directory record {i} is missing or damaged.", path, entryOffset);
            var h = cd.AsSpan(pos, CentralHeaderSize);
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(h[8..]);
            ushort method = BinaryPrimitives.ReadUInt16LittleEndian(h[10..]);
            uint crc = BinaryPrimitives.ReadUInt32LittleEndian(h[16..]);
            ulong compressed = BinaryPrimitives.ReadUInt32LittleEndian(h[20..]);
            ulong uncompressed = BinaryPrimitives.ReadUInt32LittleEndian(h[24..]);
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(h[28..]);
            int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(h[30..]);
            int commentLength = BinaryPrimitives.ReadUInt16LittleEndian(h[32..]);
            uint diskStart = BinaryPrimitives.ReadUInt16LittleEndian(h[34..]);
            ulong localOffset = BinaryPrimitives.ReadUInt32LittleEndian(h[42..]);
            int variable = nameLength + extraLength + commentLength;
            if (cd.Length - pos - CentralHeaderSize < variable)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, $"central directory record {i} runs past the end of the directory.", path, entryOffset);
            var nameBytes = cd.AsSpan(pos + CentralHeaderSize, nameLength).ToArray();
            var extra = cd.AsSpan(pos + CentralHeaderSize + nameLength, extraLength);
            string name;
            try { name = StrictUtf8.GetString(nameBytes); }
            catch (DecoderFallbackException)
            {
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, $"central directory record {i} has a name that is not valid UTF-8.", path, entryOffset);
            }
            CheckName(name, path);
            ApplyZip64Extra(extra, ref uncompressed, ref compressed, ref localOffset, ref diskStart, name, path);
            if ((flags & 0x41) != 0)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, $"the entry '{Show(name)}' is encrypted.", path, entryOffset);
            if (diskStart != 0)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, $"the entry '{Show(name)}' starts on disk {diskStart}; multi-volume archives are not supported.", path, entryOffset);
            if (compressed > (ulong)fileLength || localOffset > (ulong)fileLength || uncompressed > long.MaxValue)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                    $"the entry '{Show(name)}' declares sizes or an offset beyond the file ({compressed} compressed, {uncompressed} uncompressed, at {localOffset}; the file has {fileLength} bytes).", path, entryOffset);
            if (method == ZipEntry.Stored && compressed != uncompressed)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                    $"the stored entry '{Show(name)}' declares {compressed} bytes on disk but {uncompressed} uncompressed.", path, entryOffset);
            if (method == ZipEntry.Deflated && uncompressed > (compressed + 1) * MaxDeflateRatio)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                    $"the entry '{Show(name)}' claims {uncompressed} bytes inflated from {compressed}, beyond what deflate can produce (a zip bomb).", path, entryOffset);
            entries.Add(new ZipEntry(name, flags, method, crc, (long)compressed, (long)uncompressed, (long)localOffset));
            centralNames.Add(nameBytes);
            pos += CentralHeaderSize + variable;
        }
        if (pos != cd.Length)
            throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                $"the central directory holds {cd.Length - pos} bytes after its {entryCount} declared records.", path, cdOffset + pos);

        var index = new ZipArchiveIndex(path, fileLength, cdOffset, entries);
        ReadLocalHeaders(handle, entries, centralNames, cdOffset, path);
        CheckNoOverlap(entries, path);
        return index;
    }

    /// <summary>
    /// Reads a whole entry into memory (stored or deflated), refusing anything larger than <paramref name="maxBytes"/>
    /// before allocating, bounding inflation by the declared size, and checking the CRC.
    /// </summary>
    public byte[] ReadEntry(SafeFileHandle handle, ZipEntry entry, long maxBytes)
    {
        if (entry.Method is not (ZipEntry.Stored or ZipEntry.Deflated))
            throw new BigModelException(BigModelErrorCode.PickleZipEntryCompressed,
                $"the entry '{Show(entry.Name)}' uses compression method {entry.Method}; only stored (0) and deflated (8) entries can be read.", Path, entry.LocalHeaderOffset);
        if (entry.UncompressedSize > maxBytes || entry.CompressedSize > maxBytes)
            throw new BigModelException(BigModelErrorCode.PickleTooLarge,
                $"the entry '{Show(entry.Name)}' holds {entry.UncompressedSize} bytes ({entry.CompressedSize} on disk); the limit is {maxBytes}.", Path, entry.LocalHeaderOffset);
        var raw = new byte[entry.CompressedSize];
        ReadAt(handle, raw, entry.DataOffset, Path, $"entry '{Show(entry.Name)}'");
        byte[] data;
        if (entry.Method == ZipEntry.Stored)
        {
            data = raw;
        }
        else
        {
            data = new byte[entry.UncompressedSize];
            try
            {
                using var inflater = new DeflateStream(new MemoryStream(raw, writable: false), CompressionMode.Decompress);
                int filled = 0;
                while (filled < data.Length)
                {
                    int n = inflater.Read(data, filled, data.Length - filled);
                    if (n == 0) break;
                    filled += n;
                }
                if (filled != data.Length)
                    throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                        $"the entry '{Show(entry.Name)}' inflates to {filled} bytes, not the {data.Length} declared.", Path, entry.DataOffset);
                Span<byte> probe = stackalloc byte[1];
                if (inflater.Read(probe) != 0)
                    throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                        $"the entry '{Show(entry.Name)}' inflates to more than the {data.Length} bytes declared.", Path, entry.DataOffset);
            }
            catch (InvalidDataException e)
            {
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, $"the entry '{Show(entry.Name)}' is not valid deflate data: {e.Message}", Path, entry.DataOffset, inner: e);
            }
        }
        var crc = Crc32.Compute(data);
        if (crc != entry.Crc32)
            throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                $"the entry '{Show(entry.Name)}' fails its CRC check (0x{crc:x8} computed, 0x{entry.Crc32:x8} declared): the archive is damaged.", Path, entry.DataOffset);
        return data;
    }

    /// <summary>Why a zip entry name is unsafe to use as a path, or null when it is a plain relative name.</summary>
    public static string? NameProblem(string name)
    {
        if (name.Contains('\\')) return "contains a backslash";
        var problem = PathSafety.LexicalProblem(name);
        if (problem is not null) return problem;
        foreach (var c in name)
        {
            if (char.IsControl(c)) return "contains a control character";
        }
        return null;
    }

    public static string Show(string s)
    {
        var sb = new StringBuilder(Math.Min(s.Length, 160));
        foreach (var c in s)
        {
            if (sb.Length >= 160) { sb.Append('…'); break; }
            if (char.IsControl(c)) sb.Append($"\\x{(int)c:x2}");
            else sb.Append(c);
        }
        return sb.ToString();
    }

    private static void CheckName(string name, string path)
    {
        var problem = NameProblem(name);
        if (problem is not null)
            throw new BigModelException(BigModelErrorCode.PickleZipEntryUnsafe,
                $"zip entry '{Show(name)}' {problem}; entries must be plain relative names inside the archive.", path);
    }

    private static (ulong EntryCount, long CdSize, long CdOffset) ReadEndRecords(SafeFileHandle handle, long fileLength, string path)
    {
        if (fileLength < EndRecordSize)
            throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, $"the file is only {fileLength} bytes, too small for a zip archive.", path);
        int tailLength = (int)Math.Min(fileLength, EndRecordSize + MaxCommentLength);
        var tail = new byte[tailLength];
        long tailStart = fileLength - tailLength;
        ReadAt(handle, tail, tailStart, path, "end of the archive");
        int at = -1;
        for (int i = tailLength - EndRecordSize; i >= 0; i--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(i)) == EndSignature
                && BinaryPrimitives.ReadUInt16LittleEndian(tail.AsSpan(i + 20)) == tailLength - i - EndRecordSize)
            {
                at = i;
                break;
            }
        }
        if (at < 0)
            throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                "no end-of-central-directory record in the last 64 KiB: the archive is truncated or is not a zip file.", path);
        long endOffset = tailStart + at;
        var end = tail.AsSpan(at, EndRecordSize);
        uint disk = BinaryPrimitives.ReadUInt16LittleEndian(end[4..]);
        uint cdDisk = BinaryPrimitives.ReadUInt16LittleEndian(end[6..]);
        ulong entriesOnDisk = BinaryPrimitives.ReadUInt16LittleEndian(end[8..]);
        ulong entries = BinaryPrimitives.ReadUInt16LittleEndian(end[10..]);
        ulong cdSize = BinaryPrimitives.ReadUInt32LittleEndian(end[12..]);
        ulong cdOffset = BinaryPrimitives.ReadUInt32LittleEndian(end[16..]);
        long cdEnd = endOffset;

        if (endOffset >= Zip64LocatorSize)
        {
            Span<byte> locator = stackalloc byte[Zip64LocatorSize];
            ReadAt(handle, locator, endOffset - Zip64LocatorSize, path, "ZIP64 locator");
            if (BinaryPrimitives.ReadUInt32LittleEndian(locator) == Zip64LocatorSignature)
            {
                long locatorOffset = endOffset - Zip64LocatorSize;
                uint z64Disk = BinaryPrimitives.ReadUInt32LittleEndian(locator[4..]);
                ulong z64Offset = BinaryPrimitives.ReadUInt64LittleEndian(locator[8..]);
                uint totalDisks = BinaryPrimitives.ReadUInt32LittleEndian(locator[16..]);
                if (z64Disk != 0 || totalDisks > 1)
                    throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, "the ZIP64 locator names another disk; multi-volume archives are not supported.", path, locatorOffset);
                if (z64Offset > (ulong)(locatorOffset - Zip64EndRecordSize))
                    throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, $"the ZIP64 end record offset {z64Offset} does not lie before its locator.", path, locatorOffset);
                Span<byte> z64 = stackalloc byte[Zip64EndRecordSize];
                ReadAt(handle, z64, (long)z64Offset, path, "ZIP64 end record");
                if (BinaryPrimitives.ReadUInt32LittleEndian(z64) != Zip64EndSignature)
                    throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, "the ZIP64 locator points at something that is not a ZIP64 end record.", path, (long)z64Offset);
                ulong recordSize = BinaryPrimitives.ReadUInt64LittleEndian(z64[4..]);
                if (recordSize < Zip64EndRecordSize - 12 || recordSize != (ulong)locatorOffset - z64Offset - 12)
                    throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, $"the ZIP64 end record declares {recordSize} bytes, which does not reach its locator.", path, (long)z64Offset);
                disk = BinaryPrimitives.ReadUInt32LittleEndian(z64[16..]);
                cdDisk = BinaryPrimitives.ReadUInt32LittleEndian(z64[20..]);
                entriesOnDisk = BinaryPrimitives.ReadUInt64LittleEndian(z64[24..]);
                entries = BinaryPrimitives.ReadUInt64LittleEndian(z64[32..]);
                cdSize = BinaryPrimitives.ReadUInt64LittleEndian(z64[40..]);
                cdOffset = BinaryPrimitives.ReadUInt64LittleEndian(z64[48..]);
                cdEnd = (long)z64Offset;
            }
        }
        if (disk != 0 || cdDisk != 0 || entriesOnDisk != entries)
            throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, "the archive spans several disks; multi-volume archives are not supported.", path, endOffset);
        if (cdOffset > (ulong)cdEnd || cdSize != (ulong)cdEnd - cdOffset)
            throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                $"the central directory is declared at {cdOffset} with {cdSize} bytes, which does not end where the end record starts ({cdEnd}).", path, endOffset);
        return (entries, (long)cdSize, (long)cdOffset);
    }

    private static void ApplyZip64Extra(ReadOnlySpan<byte> extra, ref ulong uncompressed, ref ulong compressed, ref ulong localOffset, ref uint diskStart, string name, string path)
    {
        while (extra.Length >= 4)
        {
            ushort id = BinaryPrimitives.ReadUInt16LittleEndian(extra);
            int size = BinaryPrimitives.ReadUInt16LittleEndian(extra[2..]);
            if (size > extra.Length - 4)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, $"the entry '{Show(name)}' has an extra field that runs past its record.", path);
            var data = extra.Slice(4, size);
            if (id == 0x0001)
            {
                int p = 0;
                bool complete = TakeIf(uncompressed == 0xFFFFFFFF, data, 8, ref p, ref uncompressed)
                    && TakeIf(compressed == 0xFFFFFFFF, data, 8, ref p, ref compressed)
                    && TakeIf(localOffset == 0xFFFFFFFF, data, 8, ref p, ref localOffset);
                ulong disk = diskStart;
                complete = complete && TakeIf(diskStart == 0xFFFF, data, 4, ref p, ref disk);
                if (!complete)
                    throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, $"the entry '{Show(name)}' has a ZIP64 extra field too short for the values it replaces.", path);
                diskStart = (uint)disk;
            }
            extra = extra[(4 + size)..];
        }
    }

    /// <summary>When <paramref name="needed"/>, replaces <paramref name="value"/> with the next field of a ZIP64 extra block.</summary>
    private static bool TakeIf(bool needed, ReadOnlySpan<byte> data, int bytes, ref int position, ref ulong value)
    {
        if (!needed) return true;
        if (data.Length - position < bytes) return false;
        value = bytes == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(data[position..]) : BinaryPrimitives.ReadUInt32LittleEndian(data[position..]);
        position += bytes;
        return true;
    }

    private static void ReadLocalHeaders(SafeFileHandle handle, List<ZipEntry> entries, List<byte[]> centralNames, long cdOffset, string path)
    {
        var header = new byte[LocalHeaderSize + 0xFFFF];
        for (int i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            var expectedName = centralNames[i];
            if (e.LocalHeaderOffset > cdOffset - LocalHeaderSize - expectedName.Length)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                    $"the entry '{Show(e.Name)}' has its local header at {e.LocalHeaderOffset}, past the start of the central directory ({cdOffset}).", path, e.LocalHeaderOffset);
            var span = header.AsSpan(0, LocalHeaderSize + expectedName.Length);
            ReadAt(handle, span, e.LocalHeaderOffset, path, $"local header of '{Show(e.Name)}'");
            if (BinaryPrimitives.ReadUInt32LittleEndian(span) != LocalHeaderSignature)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, $"the entry '{Show(e.Name)}' has no local header where the central directory places it.", path, e.LocalHeaderOffset);
            ushort method = BinaryPrimitives.ReadUInt16LittleEndian(span[8..]);
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(span[26..]);
            int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(span[28..]);
            if (method != e.Method)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                    $"the entry '{Show(e.Name)}' declares compression method {e.Method} centrally but {method} locally.", path, e.LocalHeaderOffset);
            if (nameLength != expectedName.Length || !span[LocalHeaderSize..].SequenceEqual(expectedName))
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                    $"the entry '{Show(e.Name)}' has a different name in its local header.", path, e.LocalHeaderOffset);
            long dataOffset = e.LocalHeaderOffset + LocalHeaderSize + nameLength + extraLength;
            if (dataOffset > cdOffset || e.CompressedSize > cdOffset - dataOffset)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                    $"the data of entry '{Show(e.Name)}' ({e.CompressedSize} bytes at {dataOffset}) runs past the central directory at {cdOffset}: the archive is truncated or damaged.", path, dataOffset);
            e.DataOffset = dataOffset;
        }
    }

    private static void CheckNoOverlap(List<ZipEntry> entries, string path)
    {
        var ordered = entries.OrderBy(e => e.LocalHeaderOffset).ToList();
        for (int i = 1; i < ordered.Count; i++)
        {
            var previous = ordered[i - 1];
            var next = ordered[i];
            if (previous.DataEnd > next.LocalHeaderOffset)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                    $"the entries '{Show(previous.Name)}' and '{Show(next.Name)}' overlap (bytes {previous.LocalHeaderOffset}..{previous.DataEnd} and from {next.LocalHeaderOffset}).", path, next.LocalHeaderOffset);
        }
    }

    private BigModelException Corrupt(string message) => new(BigModelErrorCode.PickleZipCorrupt, message, Path);

    internal static void ReadAt(SafeFileHandle handle, Span<byte> destination, long offset, string path, string what)
    {
        long position = offset;
        while (!destination.IsEmpty)
        {
            int n;
            try
            {
                n = RandomAccess.Read(handle, destination, position);
            }
            catch (IOException e)
            {
                throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, path, position, inner: e);
            }
            if (n == 0)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt, $"the file ends inside the {what} (at byte {position}): the archive is truncated.", path, position);
            destination = destination[n..];
            position += n;
        }
    }
}
