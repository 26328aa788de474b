using BigModel.Errors;

namespace BigModel.DeviceMaps;

/// <summary>
/// Something a plan does that a user should know about (offloading, tied tensors apart, a device left empty), with the
/// stable code hosts report it under: PowerShell writes the message, MSBuild a warning BM{code}.
/// </summary>
public sealed record DeviceMapWarning(BigModelErrorCode Code, string Message)
{
    public override string ToString() => Message;
}
