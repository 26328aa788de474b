namespace BigModel.Checkpoints.PyTorch;

/// <summary>One file of a zip archive, as its central directory and local header describe it.</summary>
internal sealed class ZipEntry
{
    public const ushort Stored = 0;
    public const ushort Deflated = 8;

    public ZipEntry(string name, ushort flags, ushort method, uint crc32, long compressedSize, long uncompressedSize, long localHeaderOffset)
    {
        Name = name;
        Flags = flags;
        Method = method;
        Crc32 = crc32;
        CompressedSize = compressedSize;
        UncompressedSize = uncompressedSize;
        LocalHeaderOffset = localHeaderOffset;
    }

    public string Name { get; }

    public ushort Flags { get; }

    /// <summary>Compression method: 0 stored, 8 deflated, anything else unsupported.</summary>
    public ushort Method { get; }

    public uint Crc32 { get; }

    public long CompressedSize { get; }

    public long UncompressedSize { get; }

    public long LocalHeaderOffset { get; }

    /// <summary>Absolute offset of the entry's (possibly compressed) bytes, after its local header.</summary>
    public long DataOffset { get; internal set; }

    public long DataEnd => DataOffset + CompressedSize;

    public override string ToString() => Name;
}
