using System.Buffers.Binary;
using System.Text;

namespace BigModel.Tests.Support;

/// <summary>Builds raw safetensors files byte by byte, so tests control every field (valid or not).</summary>
public static class SafetensorsBytes
{
    /// <summary>8-byte little-endian length, the header text as given, then <paramref name="data"/>.</summary>
    public static byte[] Raw(string header, byte[] data, ulong? declaredLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)h.Length);
        h.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + h.Length);
        return bytes;
    }

    public static string Write(string path, string header, byte[] data, ulong? declaredLength = null)
    {
        File.WriteAllBytes(path, Raw(header, data, declaredLength));
        return path;
    }

    public static byte[] Floats(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }
}
