using System.Buffers.Binary;
using System.Text;
using BigModel.Errors;
using Microsoft.Win32.SafeHandles;

namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// Reads the tensor list of a PyTorch checkpoint (<c>pytorch_model.bin</c>, <c>*.pt</c>, <c>*.pth</c>) in the zip
/// format torch.save has written since PyTorch 1.6, without running any of its code: the zip directory is parsed
/// by BigModel, <c>data.pkl</c> is interpreted by a restricted pickle machine with the rules of
/// <c>torch.load(weights_only=True)</c>, and each tensor is reported as a byte range of the archive file, so
/// <see cref="TensorData"/> reads it exactly as it reads a safetensors tensor.
/// </summary>
public static class PyTorchCheckpointReader
{
    private const string PickleName = "data.pkl";

    /// <summary>Every tensor of the state dict, in the order the pickle lists them, with the default limits.</summary>
    public static IReadOnlyList<TensorInfo> ReadTensors(string path) => ReadTensors(path, null);

    /// <summary>Every tensor of the state dict, in the order the pickle lists them.</summary>
    public static IReadOnlyList<TensorInfo> ReadTensors(string path, PyTorchLimits? limits)
    {
        limits ??= PyTorchLimits.Default;
        var full = Path.GetFullPath(path);
        using var handle = Open(full);
        long length;
        try { length = RandomAccess.GetLength(handle); }
        catch (IOException e) { throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, full, inner: e); }

        var head = new byte[(int)Math.Min(length, 512)];
        ZipArchiveIndex.ReadAt(handle, head, 0, full, "first bytes");
        if (!ZipArchiveIndex.LooksLikeZip(head)) throw NotAZipArchive(head, full);

        var zip = ZipArchiveIndex.Read(handle, length, full, limits);
        var pickleEntry = FindPickle(zip, full);
        var prefix = pickleEntry.Name[..^PickleName.Length];
        RefuseOtherArchiveKinds(zip, prefix, full);
        CheckByteOrder(handle, zip, prefix);

        var pickle = zip.ReadEntry(handle, pickleEntry, limits.MaxPickleBytes);
        var context = new PickleContext(full, pickleEntry.Name, pickleEntry.Method == ZipEntry.Stored ? pickleEntry.DataOffset : null);
        var storages = new TorchStorageResolver(zip, prefix, context);
        var root = new RestrictedUnpickler(pickle, context, limits, storages.Resolve).Load();
        return StateDictFlattener.Flatten(root, full, limits);
    }

    private static SafeFileHandle Open(string path)
    {
        try
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        }
        catch (FileNotFoundException e)
        {
            throw new BigModelException(BigModelErrorCode.PathNotFound, "no such file.", path, inner: e);
        }
        catch (DirectoryNotFoundException e)
        {
            throw new BigModelException(BigModelErrorCode.PathNotFound, "no such file.", path, inner: e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, path, inner: e);
        }
        catch (IOException e)
        {
            throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, path, inner: e);
        }
    }

    /// <summary>
    /// The one <c>&lt;prefix&gt;data.pkl</c> of the archive. torch names the top folder after the file
    /// (<c>pytorch_model/</c>) or <c>archive/</c> when saving to a buffer, so any prefix is accepted, but only one.
    /// </summary>
    private static ZipEntry FindPickle(ZipArchiveIndex zip, string path)
    {
        ZipEntry? found = null;
        foreach (var e in zip.Entries)
        {
            if (e.Name != PickleName && !e.Name.EndsWith("/" + PickleName, StringComparison.Ordinal)) continue;
            if (found is not null)
                throw new BigModelException(BigModelErrorCode.PickleZipCorrupt,
                    $"the archive holds several pickles ('{ZipArchiveIndex.Show(found.Name)}' and '{ZipArchiveIndex.Show(e.Name)}'); a torch.save archive has exactly one data.pkl.", path);
            found = e;
        }
        if (found is null)
        {
            var hasConstants = zip.Entries.Any(e => e.Name == "constants.pkl" || e.Name.EndsWith("/constants.pkl", StringComparison.Ordinal));
            if (hasConstants) throw TorchScript(path);
            throw new BigModelException(BigModelErrorCode.PickleZipEntryMissing,
                "the zip archive has no data.pkl entry, so it was not written by torch.save.", path);
        }
        return found;
    }

    private static void RefuseOtherArchiveKinds(ZipArchiveIndex zip, string prefix, string path)
    {
        foreach (var e in zip.Entries)
        {
            if (!e.Name.StartsWith(prefix, StringComparison.Ordinal)) continue;
            var rest = e.Name.AsSpan(prefix.Length);
            if (rest.SequenceEqual("constants.pkl") || rest.StartsWith("code/")) throw TorchScript(path);
            if (rest.SequenceEqual(".data/extern_modules"))
                throw new BigModelException(BigModelErrorCode.UnsupportedFormat,
                    "this is a torch.package archive (it bundles Python code), not a torch.save state dict. Load it with torch.package.PackageImporter in a trusted environment and save the model's state_dict() with torch.save or safetensors.", path);
        }
    }

    private static BigModelException TorchScript(string path) => new(BigModelErrorCode.UnsupportedFormat,
        "this is a TorchScript archive (torch.jit.save), not a torch.save state dict. Load it with torch.jit.load and save module.state_dict() with torch.save, or as safetensors with safetensors.torch.save_file.", path);

    /// <summary>torch ≥ 2.0 records the writer's byte order; the storages are raw machine words in that order.</summary>
    private static void CheckByteOrder(SafeFileHandle handle, ZipArchiveIndex zip, string prefix)
    {
        var entry = zip.Find(prefix + "byteorder");
        if (entry is null) return;
        var bytes = zip.ReadEntry(handle, entry, 64);
        var text = Encoding.ASCII.GetString(bytes).Trim();
        if (text == "little") return;
        if (text == "big")
            throw new BigModelException(BigModelErrorCode.UnsupportedFormat,
                "the archive was written on a big-endian machine (byteorder 'big'); only little-endian archives can be read in place. Load and re-save it on a little-endian machine.", zip.Path, entry.DataOffset);
        throw new BigModelException(BigModelErrorCode.PickleMalformed,
            $"the byteorder entry says '{ZipArchiveIndex.Show(text)}'; expected 'little' or 'big'.", zip.Path, entry.DataOffset);
    }

    /// <summary>Explains what a file that is not a zip archive most likely is.</summary>
    private static BigModelException NotAZipArchive(byte[] head, string path)
    {
        if (head.Length >= 2 && head[0] == 0x80 && head[1] <= 5)
        {
            // torch's legacy format starts with a pickled magic number: LONG1 10 bytes of 0x1950a86a20f9469cfc6c.
            ReadOnlySpan<byte> magic = [0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
            var what = head.AsSpan(2).StartsWith(magic)
                ? "a PyTorch file in the legacy serialization format (torch < 1.6, or saved with _use_new_zipfile_serialization=False)"
                : "a bare pickle, not a torch.save archive";
            return new BigModelException(BigModelErrorCode.PickleLegacyFormat,
                $"this is {what}. BigModel reads only the zip format, whose tensor data can be located without running the pickle. Convert it in Python with torch.save(torch.load(path, weights_only=True), 'pytorch_model.bin'), or better to safetensors with safetensors.torch.save_file.", path, 0);
        }
        if (head.Length >= 262 && head.AsSpan(257, 5).SequenceEqual("ustar"u8))
            return new BigModelException(BigModelErrorCode.PickleLegacyFormat,
                "this is a PyTorch file in the oldest (tar) serialization format. Convert it in Python with torch.save(torch.load(path, weights_only=True), 'pytorch_model.bin') or to safetensors.", path, 0);
        if (head.Length >= 9 && head[8] == (byte)'{' && BinaryPrimitives.ReadUInt64LittleEndian(head) < 100_000_000)
            return new BigModelException(BigModelErrorCode.PickleNotZip,
                "this looks like a safetensors file with a PyTorch extension; rename it to *.safetensors.", path, 0);
        var start = Convert.ToHexString(head.AsSpan(0, Math.Min(4, head.Length)));
        return new BigModelException(BigModelErrorCode.PickleNotZip,
            head.Length == 0
                ? "the file is empty; a PyTorch checkpoint is a zip archive."
                : $"not a zip archive (it starts with bytes {start}); torch.save has written zip archives since PyTorch 1.6.", path, 0);
    }
}
