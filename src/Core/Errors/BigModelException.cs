namespace BigModel.Errors;

/// <summary>
/// The one exception type BigModel throws for anything wrong with its input, its arguments or its environment.
/// It names the file and, where one applies, the byte offset or tensor that is wrong.
/// </summary>
public class BigModelException : Exception
{
    public BigModelException(BigModelErrorCode code, string message, string? file = null, long? offset = null, string? tensor = null, Exception? inner = null)
        : base(Compose(message, file, offset, tensor), inner)
    {
        Code = code;
        File = file;
        Offset = offset;
        Tensor = tensor;
        Detail = message;
    }

    /// <summary>The stable error code.</summary>
    public BigModelErrorCode Code { get; }

    /// <summary>The file the error is about, if any.</summary>
    public string? File { get; }

    /// <summary>The byte offset within <see cref="File"/>, if known.</summary>
    public long? Offset { get; }

    /// <summary>The tensor the error is about, if any.</summary>
    public string? Tensor { get; }

    /// <summary>The message without the file/offset/tensor decoration.</summary>
    public string Detail { get; }

    /// <summary>Stable identifier, e.g. <c>BigModel.SafetensorsHeaderTooLarge</c>.</summary>
    public string ErrorId => "BigModel." + Code;

    /// <summary>MSBuild-style code, e.g. <c>BM1101</c>.</summary>
    public string BuildCode => "BM" + ((int)Code).ToString("D4", System.Globalization.CultureInfo.InvariantCulture);

    public BigModelErrorCategory Category => CategoryOf(Code);

    public static BigModelErrorCategory CategoryOf(BigModelErrorCode code) => code switch
    {
        BigModelErrorCode.PathNotFound or BigModelErrorCode.IndexShardMissing or BigModelErrorCode.PickleZipEntryMissing
            or BigModelErrorCode.TokenizerMissing => BigModelErrorCategory.NotFound,
        BigModelErrorCode.IndexPathEscapes or BigModelErrorCode.PickleForbiddenGlobal or BigModelErrorCode.PickleZipEntryUnsafe
            => BigModelErrorCategory.Security,
        BigModelErrorCode.IoFailure or BigModelErrorCode.DiskFull => BigModelErrorCategory.Io,
        BigModelErrorCode.Cancelled => BigModelErrorCategory.Cancelled,
        BigModelErrorCode.UnsupportedFormat or BigModelErrorCode.UnsupportedArchitecture or BigModelErrorCode.PickleLegacyFormat
            or BigModelErrorCode.PickleUnsupportedProtocol or BigModelErrorCode.PickleUnsupportedTensorType
            or BigModelErrorCode.TorchUnavailable or BigModelErrorCode.DeviceUnavailable
            or BigModelErrorCode.ModelKindMismatch => BigModelErrorCategory.NotSupported,
        BigModelErrorCode.PickleTooLarge => BigModelErrorCategory.ResourceLimit,
        BigModelErrorCode.InvalidGenerationInput => BigModelErrorCategory.InvalidArgument,
        >= BigModelErrorCode.InvalidSize and < BigModelErrorCode.MemoryBudgetExceeded => BigModelErrorCategory.InvalidArgument,
        >= BigModelErrorCode.MemoryBudgetExceeded and < BigModelErrorCode.DestinationExists => BigModelErrorCategory.ResourceLimit,
        >= BigModelErrorCode.DestinationExists and < BigModelErrorCode.NonFiniteValues => BigModelErrorCategory.WriteConflict,
        >= BigModelErrorCode.DeviceMapInvalidModuleName and <= BigModelErrorCode.DeviceMapUncoveredTensors => BigModelErrorCategory.InvalidArgument,
        _ => BigModelErrorCategory.InvalidData,
    };

    private static string Compose(string message, string? file, long? offset, string? tensor)
    {
        var where = new List<string>(3);
        if (file is not null) where.Add(file);
        if (tensor is not null) where.Add($"tensor '{tensor}'");
        if (offset is not null) where.Add($"byte {offset}");
        return where.Count == 0 ? message : $"{string.Join(", ", where)}: {message}";
    }
}
