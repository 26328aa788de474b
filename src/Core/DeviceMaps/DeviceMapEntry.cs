namespace BigModel.DeviceMaps;

/// <summary>One key of a device map: a module (or tensor, or "" for the whole model) and its device.</summary>
/// <param name="Module">The module name as transformers names it ("" for the whole model).</param>
/// <param name="Device">Where it goes.</param>
/// <param name="Bytes">Its size when the map was planned or measured against a checkpoint; null for a map read from JSON alone.</param>
public sealed record DeviceMapEntry(string Module, Device Device, long? Bytes);

/// <summary>What one device receives.</summary>
/// <param name="Device">The device.</param>
/// <param name="UsedBytes">Bytes of the modules placed on it (null when sizes are unknown).</param>
/// <param name="GrantedBytes">The budget planning used (after reserve and balancing); null for disk without a budget.</param>
/// <param name="RequestedBytes">The budget as given or measured, before reserve and balancing.</param>
/// <param name="ReservedBytes">Room kept free on a main device for bringing in an offloaded layer.</param>
/// <param name="Modules">The map's keys on this device, in order.</param>
/// <param name="Share">Fraction of the model's bytes placed here (null when sizes are unknown).</param>
/// <param name="IsOffload">True for cpu and disk when the plan has accelerators, and for disk always.</param>
public sealed record DeviceUsage(
    Device Device,
    long? UsedBytes,
    long? GrantedBytes,
    long? RequestedBytes,
    long ReservedBytes,
    IReadOnlyList<string> Modules,
    double? Share,
    bool IsOffload)
{
    public int ModuleCount => Modules.Count;
}
