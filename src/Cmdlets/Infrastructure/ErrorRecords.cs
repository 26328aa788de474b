using System.Management.Automation;
using BigModel.Errors;

namespace BigModel.Cmdlets.Infrastructure;

/// <summary>Maps BigModel errors to PowerShell ErrorRecords: id <c>BigModel.{Code}</c>, category by kind.</summary>
public static class ErrorRecords
{
    public static ErrorRecord From(BigModelException e, object? target = null) =>
        new(e, e.ErrorId, CategoryOf(e.Category), target ?? e.File)
        {
            ErrorDetails = new ErrorDetails(e.Message) { RecommendedAction = RecommendedAction(e.Code) },
        };

    public static ErrorCategory CategoryOf(BigModelErrorCategory category) => category switch
    {
        BigModelErrorCategory.NotFound => ErrorCategory.ObjectNotFound,
        BigModelErrorCategory.InvalidData => ErrorCategory.InvalidData,
        BigModelErrorCategory.Security => ErrorCategory.SecurityError,
        BigModelErrorCategory.InvalidArgument => ErrorCategory.InvalidArgument,
        BigModelErrorCategory.ResourceLimit => ErrorCategory.LimitsExceeded,
        BigModelErrorCategory.WriteConflict => ErrorCategory.ResourceExists,
        BigModelErrorCategory.NotSupported => ErrorCategory.NotImplemented,
        BigModelErrorCategory.Io => ErrorCategory.ReadError,
        BigModelErrorCategory.Cancelled => ErrorCategory.OperationStopped,
        _ => ErrorCategory.NotSpecified,
    };

    private static string? RecommendedAction(BigModelErrorCode code) => code switch
    {
        BigModelErrorCode.PickleForbiddenGlobal => "Do not load this file: it asks to run code. Obtain a safetensors version of the model.",
        BigModelErrorCode.IndexPathEscapes => "Do not use this checkpoint: its index points outside its folder.",
        BigModelErrorCode.DestinationExists => "Choose another destination or pass -Force to replace it.",
        BigModelErrorCode.DiskFull => "Free space on the destination's disk or choose another destination.",
        BigModelErrorCode.MemoryBudgetExceeded or BigModelErrorCode.ModelDoesNotFit => "Grant more memory with -MaxMemory, allow disk offload, or use a smaller -DType.",
        _ => null,
    };
}
