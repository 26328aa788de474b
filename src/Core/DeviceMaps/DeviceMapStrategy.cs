using BigModel.Errors;

namespace BigModel.DeviceMaps;

/// <summary>transformers' device_map strategies.</summary>
public enum DeviceMapStrategy
{
    /// <summary>transformers' "auto": the same as <see cref="Balanced"/>.</summary>
    Auto,
    /// <summary>Fill each GPU in turn to its budget (Accelerate's get_max_memory budgets as given).</summary>
    Sequential,
    /// <summary>Spread the model evenly over the GPUs (get_balanced_memory).</summary>
    Balanced,
    /// <summary>Balanced, keeping GPU 0 as empty as possible for generation's own tensors.</summary>
    BalancedLow0,
}

public static class DeviceMapStrategies
{
    /// <summary>Parses "auto", "sequential", "balanced" or "balanced_low_0" (case-insensitive; "BalancedLow0" too).</summary>
    public static DeviceMapStrategy Parse(string? text)
    {
        var s = text?.Trim().Replace("-", "_", StringComparison.Ordinal).ToLowerInvariant();
        return s switch
        {
            "auto" or "" or null => DeviceMapStrategy.Auto,
            "sequential" => DeviceMapStrategy.Sequential,
            "balanced" => DeviceMapStrategy.Balanced,
            "balanced_low_0" or "balancedlow0" => DeviceMapStrategy.BalancedLow0,
            _ => throw new BigModelException(BigModelErrorCode.InvalidArgument,
                $"'{text}' is not a device map strategy; use auto, sequential, balanced or balanced_low_0."),
        };
    }

    /// <summary>The spelling transformers uses: "auto", "sequential", "balanced", "balanced_low_0".</summary>
    public static string ToAccelerateName(this DeviceMapStrategy strategy) => strategy switch
    {
        DeviceMapStrategy.Sequential => "sequential",
        DeviceMapStrategy.Balanced => "balanced",
        DeviceMapStrategy.BalancedLow0 => "balanced_low_0",
        _ => "auto",
    };
}
