using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace BigModel.Fuzz.Archives;

/// <summary>
/// Writes zip archives field by field (APPNOTE 6.3), so tests can produce both the archives torch.save writes and
/// every way of getting one wrong: lying sizes, ZIP64 records, overlapping or misplaced entries, bad names.
/// </summary>
public sealed class ZipBuilder
{
    public sealed class Entry
    {
        public required string Name { get; init; }
        public required byte[] Data { get; init; }
        public bool Deflate { get; init; }
        public ushort Flags { get; init; }
        /// <summary>Name written in the local header instead of <see cref="Name"/>.</summary>
        public string? LocalName { get; init; }
        public ushort? LocalMethod { get; init; }
        /// <summary>Compression method written in both headers instead of the real one (the data is left as is).</summary>
        public ushort? MethodOverride { get; init; }
        public long? DeclaredCompressedSize { get; init; }
        public long? DeclaredUncompressedSize { get; init; }
        public uint? DeclaredCrc { get; init; }
        /// <summary>Local header offset written in the central directory instead of the real one.</summary>
        public long? DeclaredLocalHeaderOffset { get; init; }
        /// <summary>Write the entry's sizes and offset as 0xFFFFFFFF with a ZIP64 extra field, as large archives need.</summary>
        public bool Zip64Fields { get; init; }
        /// <summary>Zero bytes left before the local header (a sparse hole when writing to a file).</summary>
        public long GapBefore { get; init; }
        /// <summary>Local extra-field padding, as torch uses to align data to 64 bytes.</summary>
        public int LocalPadding { get; init; }
    }

    public List<Entry> Entries { get; } = [];

    /// <summary>Write ZIP64 end records (torch always does).</summary>
    public bool Zip64End { get; set; } = true;

    public string Comment { get; set; } = "";

    public byte[] TrailingBytes { get; set; } = [];

    /// <summary>Overrides the entry count written in the end records.</summary>
    public long? DeclaredEntryCount { get; set; }

    /// <summary>Overrides the central directory offset written in the end records.</summary>
    public long? DeclaredCentralDirectoryOffset { get; set; }

    public ZipBuilder Add(string name, byte[] data, bool deflate = false)
    {
        Entries.Add(new Entry { Name = name, Data = data, Deflate = deflate });
        return this;
    }

    public ZipBuilder Add(Entry entry)
    {
        Entries.Add(entry);
        return this;
    }

    public byte[] ToArray()
    {
        var ms = new MemoryStream();
        WriteTo(ms);
        return ms.ToArray();
    }

    public string WriteFile(string path)
    {
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write);
        WriteTo(fs);
        return path;
    }

    public void WriteTo(Stream stream)
    {
        var central = new MemoryStream();
        foreach (var e in Entries)
        {
            if (e.GapBefore > 0) stream.Seek(e.GapBefore, SeekOrigin.Current);
            long localOffset = stream.Position;
            var name = Encoding.UTF8.GetBytes(e.Name);
            var localName = Encoding.UTF8.GetBytes(e.LocalName ?? e.Name);
            var payload = e.Deflate ? Compress(e.Data) : e.Data;
            ushort method = e.MethodOverride ?? (ushort)(e.Deflate ? 8 : 0);
            uint crc = e.DeclaredCrc ?? Crc(e.Data);
            long csize = e.DeclaredCompressedSize ?? payload.Length;
            long usize = e.DeclaredUncompressedSize ?? e.Data.Length;

            var local = new byte[30];
            BinaryPrimitives.WriteUInt32LittleEndian(local, 0x04034b50);
            BinaryPrimitives.WriteUInt16LittleEndian(local.AsSpan(4), 45);
            BinaryPrimitives.WriteUInt16LittleEndian(local.AsSpan(6), e.Flags);
            BinaryPrimitives.WriteUInt16LittleEndian(local.AsSpan(8), e.LocalMethod ?? method);
            BinaryPrimitives.WriteUInt32LittleEndian(local.AsSpan(14), crc);
            BinaryPrimitives.WriteUInt32LittleEndian(local.AsSpan(18), (uint)Math.Min(csize, uint.MaxValue));
            BinaryPrimitives.WriteUInt32LittleEndian(local.AsSpan(22), (uint)Math.Min(usize, uint.MaxValue));
            BinaryPrimitives.WriteUInt16LittleEndian(local.AsSpan(26), (ushort)localName.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(local.AsSpan(28), (ushort)(e.LocalPadding > 0 ? e.LocalPadding + 4 : 0));
            stream.Write(local);
            stream.Write(localName);
            if (e.LocalPadding > 0)
            {
                var pad = new byte[e.LocalPadding + 4];
                BinaryPrimitives.WriteUInt16LittleEndian(pad, 0x4246); // "FB", the id torch uses
                BinaryPrimitives.WriteUInt16LittleEndian(pad.AsSpan(2), (ushort)e.LocalPadding);
                stream.Write(pad);
            }
            stream.Write(payload);

            long declaredOffset = e.DeclaredLocalHeaderOffset ?? localOffset;
            byte[] extra = [];
            if (e.Zip64Fields)
            {
                extra = new byte[4 + 24];
                BinaryPrimitives.WriteUInt16LittleEndian(extra, 0x0001);
                BinaryPrimitives.WriteUInt16LittleEndian(extra.AsSpan(2), 24);
                BinaryPrimitives.WriteUInt64LittleEndian(extra.AsSpan(4), (ulong)usize);
                BinaryPrimitives.WriteUInt64LittleEndian(extra.AsSpan(12), (ulong)csize);
                BinaryPrimitives.WriteUInt64LittleEndian(extra.AsSpan(20), (ulong)declaredOffset);
            }
            var header = new byte[46];
            BinaryPrimitives.WriteUInt32LittleEndian(header, 0x02014b50);
            BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(4), 45);
            BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(6), 45);
            BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(8), e.Flags);
            BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(10), method);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(16), crc);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(20), e.Zip64Fields ? uint.MaxValue : checked((uint)csize));
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(24), e.Zip64Fields ? uint.MaxValue : checked((uint)usize));
            BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(28), (ushort)name.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(30), (ushort)extra.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(42), e.Zip64Fields ? uint.MaxValue : checked((uint)declaredOffset));
            central.Write(header);
            central.Write(name);
            central.Write(extra);
        }

        long cdOffset = stream.Position;
        central.Position = 0;
        central.CopyTo(stream);
        long cdSize = central.Length;
        long count = DeclaredEntryCount ?? Entries.Count;
        long writtenCdOffset = DeclaredCentralDirectoryOffset ?? cdOffset;
        if (Zip64End)
        {
            long z64Offset = stream.Position;
            var z64 = new byte[56];
            BinaryPrimitives.WriteUInt32LittleEndian(z64, 0x06064b50);
            BinaryPrimitives.WriteUInt64LittleEndian(z64.AsSpan(4), 44);
            BinaryPrimitives.WriteUInt16LittleEndian(z64.AsSpan(12), 45);
            BinaryPrimitives.WriteUInt16LittleEndian(z64.AsSpan(14), 45);
            BinaryPrimitives.WriteUInt64LittleEndian(z64.AsSpan(24), (ulong)count);
            BinaryPrimitives.WriteUInt64LittleEndian(z64.AsSpan(32), (ulong)count);
            BinaryPrimitives.WriteUInt64LittleEndian(z64.AsSpan(40), (ulong)cdSize);
            BinaryPrimitives.WriteUInt64LittleEndian(z64.AsSpan(48), (ulong)writtenCdOffset);
            stream.Write(z64);
            var locator = new byte[20];
            BinaryPrimitives.WriteUInt32LittleEndian(locator, 0x07064b50);
            BinaryPrimitives.WriteUInt64LittleEndian(locator.AsSpan(8), (ulong)z64Offset);
            BinaryPrimitives.WriteUInt32LittleEndian(locator.AsSpan(16), 1);
            stream.Write(locator);
        }
        var comment = Encoding.UTF8.GetBytes(Comment);
        var end = new byte[22];
        BinaryPrimitives.WriteUInt32LittleEndian(end, 0x06054b50);
        BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(8), (ushort)Math.Min(count, 0xFFFF));
        BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(10), (ushort)Math.Min(count, 0xFFFF));
        BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(12), (uint)Math.Min(cdSize, uint.MaxValue));
        BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(16), Zip64End && writtenCdOffset > uint.MaxValue ? uint.MaxValue : (uint)writtenCdOffset);
        BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(20), (ushort)comment.Length);
        stream.Write(end);
        stream.Write(comment);
        stream.Write(TrailingBytes);
    }

    public static byte[] Compress(byte[] data)
    {
        var ms = new MemoryStream();
        using (var deflate = new DeflateStream(ms, CompressionLevel.SmallestSize, leaveOpen: true)) deflate.Write(data);
        return ms.ToArray();
    }

    /// <summary>CRC-32 (IEEE), computed bit by bit so it shares no code with the reader's table version.</summary>
    public static uint Crc(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (var b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (uint)-(int)(crc & 1));
        }
        return ~crc;
    }
}
