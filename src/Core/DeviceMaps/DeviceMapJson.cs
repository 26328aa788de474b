using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using BigModel.Errors;
using BigModel.IO;

namespace BigModel.DeviceMaps;

/// <summary>
/// Device maps as JSON, in the shape transformers and Accelerate use: an object of module name to device, GPUs as
/// numbers (<c>{"model.embed_tokens": 0, "lm_head": "cpu"}</c>).
/// </summary>
internal static class DeviceMapJson
{
    /// <summary>Real maps are a few kilobytes; anything far larger is not a device map.</summary>
    public const long MaxFileBytes = 64L * 1024 * 1024;

    public const int MaxEntries = 1_000_000;

    public static string Write(DeviceMap map, bool indented)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions
        {
            Indented = indented,
            // Module names are plain ASCII; keep them readable rather than \u-escaped.
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        }))
        {
            writer.WriteStartObject();
            foreach (var e in map.Entries)
            {
                if (e.Device.IsGpu) writer.WriteNumber(e.Module, e.Device.Index);
                else writer.WriteString(e.Module, e.Device.Name);
            }
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    public static DeviceMap Load(string path)
    {
        var bytes = SmallFile.ReadAllBytes(path, MaxFileBytes, BigModelErrorCode.DeviceMapTooLarge, "the device map");
        if (!System.Text.Unicode.Utf8.IsValid(bytes))
            throw new BigModelException(BigModelErrorCode.InvalidDeviceMap, "the device map is not valid UTF-8.", path);
        return Read(Encoding.UTF8.GetString(bytes), path);
    }

    public static DeviceMap Read(string json, string? source)
    {
        if (json.Length > MaxFileBytes)
            throw new BigModelException(BigModelErrorCode.DeviceMapTooLarge, $"the text is {json.Length} characters; a device map is at most {MaxFileBytes}.", source);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 8, AllowTrailingCommas = false });
        }
        catch (JsonException e)
        {
            throw new BigModelException(BigModelErrorCode.InvalidDeviceMap, $"not valid JSON: {e.Message}", source, e.BytePositionInLine, inner: e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new BigModelException(BigModelErrorCode.InvalidDeviceMap,
                    "a device map is a JSON object of module name to device, e.g. {\"model.embed_tokens\": 0, \"lm_head\": \"cpu\"}.", source);
            var entries = new List<DeviceMapEntry>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (entries.Count >= MaxEntries)
                    throw new BigModelException(BigModelErrorCode.DeviceMapTooLarge, $"more than {MaxEntries} entries.", source);
                var module = p.Name;
                if (!seen.Add(module))
                    throw new BigModelException(BigModelErrorCode.InvalidDeviceMap, $"module '{module}' is given twice.", source);
                ValidateKey(module, source);
                entries.Add(new DeviceMapEntry(module, ReadDevice(p.Value, module, source), null));
            }
            return new DeviceMap(entries, source);
        }
    }

    private static void ValidateKey(string module, string? source)
    {
        if (module.Length == 0) return;
        if (module[0] == '.' || module[^1] == '.' || module.Contains("..", StringComparison.Ordinal))
            throw new BigModelException(BigModelErrorCode.InvalidDeviceMap, $"'{module}' is not a module name (empty segment).", source);
        if (module.Count(c => c == '.') >= ModuleTree.MaxDepth)
            throw new BigModelException(BigModelErrorCode.InvalidDeviceMap, $"'{module[..Math.Min(60, module.Length)]}...' has more than {ModuleTree.MaxDepth} segments.", source);
    }

    private static string Truncate(string s) => s.Length <= 60 ? s : s[..60] + "...";

    private static Device ReadDevice(JsonElement value, string module, string? source)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Number:
                if (value.TryGetInt32(out var index) && index >= 0 && index <= Device.MaxGpuIndex) return Device.Gpu(index);
                break;
            case JsonValueKind.String:
                if (Device.TryParse(value.GetString(), out var device)) return device;
                break;
        }
        throw new BigModelException(BigModelErrorCode.InvalidDevice,
            $"module '{module}' has device {Truncate(value.GetRawText())}; use a GPU index (0, 1, ...), \"cuda:N\", \"mps\", \"xpu\", \"cpu\" or \"disk\".", source);
    }
}
