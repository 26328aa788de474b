using System.Globalization;
using BigModel.Errors;
using BigModel.IO;
using BigModel.Memory;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace BigModel.Build.Tasks;

/// <summary>Estimates a model's memory (Get-ModelMemory) and optionally fails the build over a budget.</summary>
public sealed class GetModelMemory : BigModelTask
{
    /// <summary>Checkpoint (file, index or folder) or config.json.</summary>
    [Required] public ITaskItem Path { get; set; } = null!;
    /// <summary>Precisions; the first one is reported in the scalar outputs and checked against MaxBytes.</summary>
    public string[] DTypes { get; set; } = [];
    public int ContextLength { get; set; }
    public int BatchSize { get; set; } = 1;
    /// <summary>Fail (BM1600) when the first precision's inference memory exceeds this size, e.g. 8GiB.</summary>
    public string? MaxBytes { get; set; }

    [Output] public long TotalBytes { get; private set; }
    [Output] public long InferenceBytes { get; private set; }
    [Output] public long LargestLayerBytes { get; private set; }
    [Output] public string LargestLayer { get; private set; } = "";
    [Output] public long ParameterCount { get; private set; }
    /// <summary>One item per precision, with every figure as metadata.</summary>
    [Output] public ITaskItem[] Estimates { get; private set; } = [];

    protected override void Run()
    {
        var rows = ModelMemoryEstimator.Estimate(FullPath(Path), new MemoryEstimateOptions
        {
            DTypes = DTypes.Select(MemoryDType.Parse).ToList(),
            ContextLength = ContextLength > 0 ? ContextLength : null,
            BatchSize = BatchSize,
        });
        var first = rows[0];
        (TotalBytes, InferenceBytes, LargestLayerBytes, LargestLayer, ParameterCount) =
            (first.TotalBytes, first.InferenceBytes, first.LargestLayerBytes, first.LargestLayer, first.ParameterCount);
        Estimates = rows.Select(ToItem).ToArray();
        foreach (var note in rows.SelectMany(r => r.Notes).Distinct())
            LogWarning(BigModelErrorCode.ConfigMissingValue, note, FullPath(Path));
        Log.LogMessage(MessageImportance.Normal, "{0} ({1}): {2} weights, {3} to run with {4} tokens of context.",
            Path.ItemSpec, first.DType, ByteSize.Format(first.TotalBytes), ByteSize.Format(first.InferenceBytes), first.ContextLength);
        if (MaxBytes is { Length: > 0 }) first.ThrowIfOver(ByteSize.Parse(MaxBytes, "MaxBytes"), MaxBytes);
    }

    private static ITaskItem ToItem(ModelMemory row)
    {
        var item = new TaskItem(row.DType.Name);
        string N(long v) => v.ToString(CultureInfo.InvariantCulture);
        item.SetMetadata("Model", row.Model);
        item.SetMetadata("ParameterCount", N(row.ParameterCount));
        item.SetMetadata("TotalBytes", N(row.TotalBytes));
        item.SetMetadata("LargestLayer", row.LargestLayer);
        item.SetMetadata("LargestLayerBytes", N(row.LargestLayerBytes));
        item.SetMetadata("TrainingAdamBytes", row.TrainingAdamBytes is long t ? N(t) : "");
        item.SetMetadata("KvCacheBytes", N(row.KvCacheBytes));
        item.SetMetadata("ActivationBytes", N(row.ActivationBytes));
        item.SetMetadata("InferenceBytes", N(row.InferenceBytes));
        item.SetMetadata("ContextLength", row.ContextLength.ToString(CultureInfo.InvariantCulture));
        item.SetMetadata("BatchSize", row.BatchSize.ToString(CultureInfo.InvariantCulture));
        return item;
    }
}
