namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// A storage named by a persistent id <c>('storage', type, key, location, numel)</c>: the STORED zip entry
/// <c>&lt;prefix&gt;/data/&lt;key&gt;</c> whose bytes are the storage's elements.
/// </summary>
internal sealed class TorchStorage
{
    public TorchStorage(string key, string typeName, DType? elementType, long byteLength, ZipEntry entry)
    {
        Key = key;
        TypeName = typeName;
        ElementType = elementType;
        ByteLength = byteLength;
        Entry = entry;
    }

    public string Key { get; }

    /// <summary>The storage class as pickled, e.g. <c>torch.FloatStorage</c> or <c>torch.UntypedStorage</c>.</summary>
    public string TypeName { get; }

    /// <summary>Element type of a typed storage; null for an untyped (byte) storage, whose tensors carry their own dtype.</summary>
    public DType? ElementType { get; }

    public long ByteLength { get; }

    public ZipEntry Entry { get; }

    /// <summary>Absolute offset of the storage's first byte in the archive file.</summary>
    public long DataOffset => Entry.DataOffset;
}
