using BigModel.Errors;

namespace BigModel.Checkpoints.PyTorch;

/// <summary>Where a pickle comes from, so that every error names the archive, the entry and the byte at fault.</summary>
internal sealed class PickleContext
{
    public PickleContext(string file, string entryName, long? baseOffset)
    {
        File = file;
        EntryName = entryName;
        BaseOffset = baseOffset;
    }

    public string File { get; }

    /// <summary>The zip entry holding the pickle, e.g. <c>archive/data.pkl</c>.</summary>
    public string EntryName { get; }

    /// <summary>Absolute offset of the pickle's first byte in <see cref="File"/>; null when the entry is compressed.</summary>
    public long? BaseOffset { get; }

    /// <summary>An error at byte <paramref name="at"/> of the pickle (the absolute file offset when the entry is stored).</summary>
    public BigModelException Error(BigModelErrorCode code, string message, long at) =>
        new(code, $"{message} ({ZipArchiveIndex.Show(EntryName)} byte {at})", File, BaseOffset is long b ? b + at : null);
}
