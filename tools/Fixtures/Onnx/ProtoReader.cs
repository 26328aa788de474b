using BigModel.Errors;

namespace BigModel.Fixtures.Onnx;

/// <summary>Protocol-buffers wire types.</summary>
public enum WireType
{
    Varint = 0,
    Fixed64 = 1,
    LengthDelimited = 2,
    StartGroup = 3,
    EndGroup = 4,
    Fixed32 = 5,
}

/// <summary>
/// Reads protocol-buffers wire format field by field over a byte range. Every length and varint is checked against
/// the range, so a truncated or hostile message ends in a <see cref="BigModelException"/> naming the byte offset,
/// never in an out-of-range read or an allocation sized by the input.
/// </summary>
public struct ProtoReader
{
    private readonly ReadOnlyMemory<byte> _buffer;
    private readonly long _origin;
    private readonly string? _file;
    private int _position;

    /// <param name="buffer">The message bytes.</param>
    /// <param name="origin">Offset of <paramref name="buffer"/> in the whole file, for error messages.</param>
    /// <param name="file">The file the bytes come from, for error messages.</param>
    public ProtoReader(ReadOnlyMemory<byte> buffer, long origin = 0, string? file = null)
    {
        _buffer = buffer;
        _origin = origin;
        _file = file;
        _position = 0;
    }

    public readonly bool AtEnd => _position >= _buffer.Length;

    /// <summary>Offset of the next byte in the whole file.</summary>
    public readonly long FileOffset => _origin + _position;

    /// <summary>Reads the next field key; false at the end of the message.</summary>
    public bool TryReadTag(out int field, out WireType wireType)
    {
        field = 0;
        wireType = default;
        if (AtEnd) return false;
        long at = FileOffset;
        ulong key = ReadVarint();
        var type = (WireType)(key & 7);
        ulong number = key >> 3;
        if (number == 0 || number > int.MaxValue)
            throw Malformed($"field number {number} is invalid", at);
        if (type is not (WireType.Varint or WireType.Fixed64 or WireType.LengthDelimited or WireType.Fixed32))
            throw Malformed($"wire type {(int)type} of field {number} is not supported", at);
        field = (int)number;
        wireType = type;
        return true;
    }

    public ulong ReadVarint()
    {
        var span = _buffer.Span;
        ulong result = 0;
        for (int shift = 0; shift < 70; shift += 7)
        {
            if (_position >= span.Length) throw Malformed("a varint runs past the end of its message", FileOffset);
            byte b = span[_position++];
            if (shift == 63 && b > 1) throw Malformed("a varint is longer than 64 bits", FileOffset - 1);
            result |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0) return result;
        }
        throw Malformed("a varint is longer than 10 bytes", FileOffset);
    }

    public long ReadInt64() => unchecked((long)ReadVarint());

    public int ReadInt32()
    {
        long at = FileOffset;
        long v = ReadInt64();
        if (v < int.MinValue || v > int.MaxValue) throw Malformed($"int32 value {v} is out of range", at);
        return (int)v;
    }

    public uint ReadFixed32()
    {
        var s = Take(4);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(s.Span);
    }

    public ulong ReadFixed64()
    {
        var s = Take(8);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(s.Span);
    }

    /// <summary>Reads a length-delimited field: its bytes and their offset in the file.</summary>
    public (ReadOnlyMemory<byte> Bytes, long FileOffset) ReadLengthDelimited()
    {
        long at = FileOffset;
        ulong length = ReadVarint();
        if (length > (ulong)(_buffer.Length - _position))
            throw Malformed($"a field of {length} bytes runs past the end of its message", at);
        long start = FileOffset;
        return (Take((int)length), start);
    }

    public string ReadString()
    {
        var (bytes, at) = ReadLengthDelimited();
        try
        {
            return new System.Text.UTF8Encoding(false, true).GetString(bytes.Span);
        }
        catch (System.Text.DecoderFallbackException)
        {
            throw Malformed("a string field is not valid UTF-8", at);
        }
    }

    /// <summary>A nested message's reader.</summary>
    public ProtoReader ReadMessage()
    {
        var (bytes, at) = ReadLengthDelimited();
        return new ProtoReader(bytes, at, _file);
    }

    public void Skip(WireType wireType)
    {
        switch (wireType)
        {
            case WireType.Varint: ReadVarint(); break;
            case WireType.Fixed64: Take(8); break;
            case WireType.Fixed32: Take(4); break;
            case WireType.LengthDelimited: ReadLengthDelimited(); break;
            default: throw Malformed($"wire type {(int)wireType} cannot be skipped", FileOffset);
        }
    }

    private ReadOnlyMemory<byte> Take(int count)
    {
        if (count > _buffer.Length - _position) throw Malformed($"{count} bytes run past the end of the message", FileOffset);
        var slice = _buffer.Slice(_position, count);
        _position += count;
        return slice;
    }

    public readonly BigModelException Malformed(string what, long offset) =>
        new(BigModelErrorCode.UnsupportedFormat, $"not a valid ONNX protobuf: {what}.", _file, offset);
}
