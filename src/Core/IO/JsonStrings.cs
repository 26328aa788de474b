using System.Text.Json;
using BigModel.Errors;

namespace BigModel.IO;

/// <summary>
/// Reads JSON strings (values and property names) from untrusted files. JSON may spell UTF-16 code units that do not
/// form text, such as an unpaired surrogate <c>"\ud800"</c>; System.Text.Json accepts them while parsing and throws
/// <see cref="InvalidOperationException"/> only when the string is read. Here that becomes the file's own typed
/// "not JSON" error, with the byte offset where the reader knows it.
/// </summary>
public static class JsonStrings
{
    /// <summary>What every error says about such a string.</summary>
    public const string InvalidText = "a string holds an escape that is not valid Unicode text (such as an unpaired surrogate, \\ud800)";

    /// <summary>The current token's string (a value or a property name).</summary>
    /// <param name="reader">Positioned on a string or property name.</param>
    /// <param name="code">The file kind's "not JSON" code.</param>
    /// <param name="path">The file, for the error.</param>
    /// <param name="baseOffset">Where the JSON starts in the file (8 for a safetensors header).</param>
    public static string Read(ref Utf8JsonReader reader, BigModelErrorCode code, string? path, long baseOffset = 0)
    {
        try
        {
            return reader.GetString()!;
        }
        catch (InvalidOperationException e)
        {
            throw new BigModelException(code, InvalidText + ".", path, baseOffset + reader.TokenStartIndex, inner: e);
        }
    }

    /// <summary>A string value of a parsed document.</summary>
    public static string Read(JsonElement element, BigModelErrorCode code, string? path)
    {
        try
        {
            return element.GetString()!;
        }
        catch (InvalidOperationException e) when (element.ValueKind == JsonValueKind.String)
        {
            throw new BigModelException(code, InvalidText + ".", path, inner: e);
        }
    }

    /// <summary>
    /// Runs <paramref name="read"/>, which walks a parsed document or node tree (property names are decoded lazily,
    /// while enumerating), turning an undecodable string into <paramref name="code"/>; <paramref name="offset"/> is
    /// where the document starts in the file, when known.
    /// </summary>
    public static T Guard<T>(BigModelErrorCode code, string? path, Func<T> read, long? offset = null)
    {
        try
        {
            return read();
        }
        catch (InvalidOperationException e) when (e is not ObjectDisposedException)
        {
            throw new BigModelException(code, InvalidText + ".", path, offset, inner: e);
        }
    }
}
