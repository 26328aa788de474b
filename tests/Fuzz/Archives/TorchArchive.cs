namespace BigModel.Fuzz.Archives;

/// <summary>Lays out a torch.save-style archive: &lt;prefix&gt;/data.pkl, byteorder, data/&lt;key&gt; storages, version.</summary>
public static class TorchArchive
{
    public static ZipBuilder Builder(byte[] pickle, IEnumerable<(string Key, byte[] Data)>? storages = null, string prefix = "archive", bool byteorder = true)
    {
        var zip = new ZipBuilder();
        zip.Add(new ZipBuilder.Entry { Name = $"{prefix}/data.pkl", Data = pickle, LocalPadding = 12 });
        if (byteorder) zip.Add($"{prefix}/byteorder", "little"u8.ToArray());
        foreach (var (key, data) in storages ?? [])
            zip.Add(new ZipBuilder.Entry { Name = $"{prefix}/data/{key}", Data = data, LocalPadding = 20 });
        zip.Add($"{prefix}/version", "3\n"u8.ToArray());
        return zip;
    }

    public static string Write(string path, byte[] pickle, IEnumerable<(string Key, byte[] Data)>? storages = null, string prefix = "archive") =>
        Builder(pickle, storages, prefix).WriteFile(path);

    public static byte[] Floats(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BitConverter.TryWriteBytes(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }

    public static byte[] Sequence(int count, int elementBytes)
    {
        var bytes = new byte[count * elementBytes];
        for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)(i * 7 + 3);
        return bytes;
    }
}
