using BigModel.Errors;
using Tokenizers.DotNet;

namespace BigModel.Inference;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c>, run by the tokenizers library itself (through Tokenizers.DotNet), so
/// normalisation, pre-tokenisation, the model and post-processing (BOS, [CLS]/[SEP]) are exactly the original's.
/// Encoding adds the special tokens the post-processor defines; decoding skips special tokens.
/// </summary>
public sealed class TextTokenizer : IDisposable
{
    /// <summary>tokenizer.json files larger than this are refused (real ones are a few megabytes).</summary>
    public const long MaxFileBytes = 256L * 1024 * 1024;

    private readonly Tokenizer _tokenizer;
    private readonly object _gate = new();

    private TextTokenizer(Tokenizer tokenizer, string path)
    {
        _tokenizer = tokenizer;
        Path = path;
    }

    public string Path { get; }

    /// <summary>Loads <paramref name="path"/>; a missing file is <see cref="BigModelErrorCode.TokenizerMissing"/>, a bad one <see cref="BigModelErrorCode.TokenizerInvalid"/>.</summary>
    public static TextTokenizer Load(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        var info = new FileInfo(full);
        if (!info.Exists) throw new BigModelException(BigModelErrorCode.TokenizerMissing, "tokenizer.json does not exist.", full);
        if (info.Length > MaxFileBytes)
            throw new BigModelException(BigModelErrorCode.TokenizerInvalid, $"the tokenizer file is {info.Length} bytes; the limit is {MaxFileBytes}.", full);
        try
        {
            return new TextTokenizer(new Tokenizer(full), full);
        }
        catch (TokenizerException e)
        {
            throw new BigModelException(BigModelErrorCode.TokenizerInvalid, $"the tokenizer could not be loaded: {e.Message}", full, inner: e);
        }
        catch (DllNotFoundException e)
        {
            throw new BigModelException(BigModelErrorCode.TokenizerInvalid, $"the native tokenizers library is missing for this platform: {e.Message}", full, inner: e);
        }
    }

    /// <summary>Token ids of <paramref name="text"/>, special tokens added as the tokenizer's post-processor says.</summary>
    public int[] Encode(string text)
    {
        uint[] ids;
        try
        {
            lock (_gate) ids = _tokenizer.Encode(text);
        }
        catch (TokenizerException e)
        {
            throw new BigModelException(BigModelErrorCode.TokenizerInvalid, $"the text could not be tokenized: {e.Message}", Path, inner: e);
        }
        var result = new int[ids.Length];
        for (int i = 0; i < ids.Length; i++)
            result[i] = ids[i] <= int.MaxValue ? (int)ids[i] : throw new BigModelException(BigModelErrorCode.TokenizerInvalid, $"token id {ids[i]} is out of range.", Path);
        return result;
    }

    /// <summary>Text of <paramref name="ids"/>, special tokens skipped.</summary>
    public string Decode(IReadOnlyList<int> ids)
    {
        var raw = new uint[ids.Count];
        for (int i = 0; i < raw.Length; i++)
            raw[i] = ids[i] >= 0 ? (uint)ids[i] : throw new BigModelException(BigModelErrorCode.InvalidArgument, $"token id {ids[i]} is negative.", Path);
        try
        {
            lock (_gate) return _tokenizer.Decode(raw);
        }
        catch (TokenizerException e)
        {
            throw new BigModelException(BigModelErrorCode.TokenizerInvalid, $"the ids could not be decoded: {e.Message}", Path, inner: e);
        }
    }

    public void Dispose()
    {
        lock (_gate) _tokenizer.Dispose();
    }
}
