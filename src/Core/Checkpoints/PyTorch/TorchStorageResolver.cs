using System.Text;
using BigModel.Errors;

namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// Turns the persistent ids of a torch.save pickle, <c>('storage', storage_type, key, location, numel)</c>, into
/// the archive entries <c>&lt;prefix&gt;data/&lt;key&gt;</c> that hold their bytes. Keys are plain names (no path
/// characters), entries must be stored uncompressed so their bytes can be read or mapped in place, and an entry
/// must hold exactly the bytes the id declares. As torch does, the first id naming a key decides its storage.
/// </summary>
internal sealed class TorchStorageResolver
{
    private readonly ZipArchiveIndex _zip;
    private readonly string _prefix;
    private readonly PickleContext _context;
    private readonly Dictionary<string, TorchStorage> _storages = new(StringComparer.Ordinal);

    public TorchStorageResolver(ZipArchiveIndex zip, string prefix, PickleContext context)
    {
        _zip = zip;
        _prefix = prefix;
        _context = context;
    }

    public TorchStorage Resolve(object? pid, long at)
    {
        if (pid is not object?[] id || id.Length == 0)
            throw _context.Error(BigModelErrorCode.PickleMalformed,
                $"a persistent id must be a tuple ('storage', type, key, location, numel), got {RestrictedUnpickler.TypeName(pid)}.", at);
        var tag = Text(id[0]);
        if (tag != "storage")
            throw _context.Error(BigModelErrorCode.PickleForbiddenGlobal,
                $"persistent id of kind '{ZipArchiveIndex.Show(tag ?? RestrictedUnpickler.TypeName(id[0]))}': a weights file may only refer to storages.", at);
        if (id.Length != 5)
            throw _context.Error(BigModelErrorCode.PickleMalformed, $"a storage persistent id has 5 items ('storage', type, key, location, numel), not {id.Length}.", at);
        if (id[1] is not PyGlobal { Kind: TorchGlobalKind.StorageType or TorchGlobalKind.UntypedStorageType } type)
            throw _context.Error(BigModelErrorCode.PickleMalformed, $"a storage persistent id needs a storage type, got {RestrictedUnpickler.TypeName(id[1])}.", at);
        var key = Text(id[2])
            ?? throw _context.Error(BigModelErrorCode.PickleMalformed, $"a storage key must be a short string, got {RestrictedUnpickler.TypeName(id[2])}.", at);
        var keyProblem = KeyProblem(key);
        if (keyProblem is not null)
            throw _context.Error(BigModelErrorCode.PickleZipEntryUnsafe,
                $"a persistent id names storage '{ZipArchiveIndex.Show(key)}', which {keyProblem}; storage keys are plain names of entries under {ZipArchiveIndex.Show(_prefix)}data/.", at);
        if (id[3] is not (string or byte[]))
            throw _context.Error(BigModelErrorCode.PickleMalformed, $"a storage location must be a string, got {RestrictedUnpickler.TypeName(id[3])}.", at);
        if (id[4] is not long numel || numel < 0)
            throw _context.Error(BigModelErrorCode.PickleMalformed, "a storage element count must be a non-negative integer.", at);
        if (_storages.TryGetValue(key, out var known)) return known;

        if (type.Kind == TorchGlobalKind.StorageType && type.DType is null)
            throw _context.Error(BigModelErrorCode.PickleUnsupportedTensorType, $"storage '{ZipArchiveIndex.Show(key)}' is a {type.FullName}: {type.Unsupported}.", at);
        var entryName = _prefix + "data/" + key;
        var entry = _zip.Find(entryName)
            ?? throw _context.Error(BigModelErrorCode.PickleZipEntryMissing,
                $"a persistent id names storage '{ZipArchiveIndex.Show(key)}' but the archive has no entry '{ZipArchiveIndex.Show(entryName)}'.", at);
        if (entry.Method != ZipEntry.Stored)
            throw new BigModelException(BigModelErrorCode.PickleZipEntryCompressed,
                $"the storage entry '{ZipArchiveIndex.Show(entryName)}' is compressed (method {entry.Method}); tensor data must be stored uncompressed, as torch.save writes it, so that it can be read in place. Re-save the checkpoint with torch.save.",
                _zip.Path, entry.LocalHeaderOffset);
        int elementBytes = type.DType is DType d ? d.Bits() / 8 : 1;
        long bytes;
        try { bytes = checked(numel * elementBytes); }
        catch (OverflowException)
        {
            throw _context.Error(BigModelErrorCode.PickleStorageOutOfRange, $"storage '{ZipArchiveIndex.Show(key)}' declares {numel} elements, too many to address.", at);
        }
        if (bytes != entry.UncompressedSize)
            throw _context.Error(BigModelErrorCode.PickleStorageOutOfRange,
                $"storage '{ZipArchiveIndex.Show(key)}' declares {numel} elements of {type.FullName} ({bytes} bytes) but its entry holds {entry.UncompressedSize} bytes.", at);
        var storage = new TorchStorage(key, type.FullName, type.DType, bytes, entry);
        _storages[key] = storage;
        return storage;
    }

    /// <summary>Why a storage key cannot name an entry, or null. torch writes decimal keys; any plain name is accepted.</summary>
    public static string? KeyProblem(string key)
    {
        if (key.Length == 0) return "is empty";
        if (key.Length > 128) return "is longer than 128 characters";
        if (key is "." or "..") return "is a relative folder name";
        foreach (var c in key)
        {
            if (c is '/' or '\\') return "contains a path separator";
            if (c == ':') return "contains ':'";
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.')) return "contains characters other than letters, digits, '_', '-' and '.'";
        }
        return null;
    }

    /// <summary>A tag or key as text: a str, or short ASCII bytes (how protocol-2 pickles from Python 2 spell them).</summary>
    private static string? Text(object? value) => value switch
    {
        string s => s,
        byte[] { Length: <= 256 } b when b.All(x => x < 0x80) => Encoding.ASCII.GetString(b),
        _ => null,
    };
}
