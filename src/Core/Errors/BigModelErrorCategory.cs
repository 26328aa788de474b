namespace BigModel.Errors;

/// <summary>What kind of problem an error is; hosts map it to their own categories (PowerShell's ErrorCategory).</summary>
public enum BigModelErrorCategory
{
    NotFound,
    InvalidData,
    Security,
    InvalidArgument,
    ResourceLimit,
    WriteConflict,
    NotSupported,
    Io,
    Cancelled,
}
