using System.Globalization;
using BigModel.Checkpoints;
using BigModel.DeviceMaps;
using BigModel.IO;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace BigModel.Build.Tasks;

/// <summary>Plans an Accelerate device map (New-DeviceMap) and writes its JSON; can fail the build on offload.</summary>
public sealed class NewDeviceMap : BigModelTask
{
    [Required] public ITaskItem Checkpoint { get; set; } = null!;
    /// <summary>Budget as <c>0=24GiB;1=24GiB;cpu=64GiB</c> or Accelerate's JSON; empty measures the build machine.</summary>
    public string? MaxMemory { get; set; }
    public string Strategy { get; set; } = "auto";
    public string[] NoSplit { get; set; } = [];
    public string? DType { get; set; }
    public string? Reserve { get; set; }
    /// <summary>Where to write the JSON map.</summary>
    public ITaskItem? OutputFile { get; set; }
    /// <summary>Fail (BM1601/BM1603) when anything lands on disk, or on cpu while GPUs are budgeted.</summary>
    public bool FailIfOffloaded { get; set; }

    [Output] public long OffloadedBytes { get; private set; }
    [Output] public string OffloadedShare { get; private set; } = "0";
    /// <summary>One item per device with UsedBytes, GrantedBytes, Modules metadata.</summary>
    [Output] public ITaskItem[] Devices { get; private set; } = [];

    /// <summary>True when the map was already current and planning was skipped.</summary>
    [Output] public bool Skipped { get; private set; }

    protected override void Run()
    {
        var checkpoint = Checkpoints.Checkpoint.Open(FullPath(Checkpoint));
        var output = OutputFile is null ? null : FullPath(OutputFile);
        var parameters = string.Join("|", checkpoint.Path, MaxMemory, Strategy, string.Join(",", NoSplit), DType, Reserve, FailIfOffloaded);
        var inputs = checkpoint.Files.Append(Path.Combine(checkpoint.Directory, "config.json")).Where(File.Exists);
        if (output is not null && IncrementalStamp.IsCurrent(output, inputs, parameters))
        {
            Skipped = true;
            Log.LogMessage(MessageImportance.Normal, "{0} is up to date.", output);
            return;
        }
        var map = DeviceMapPlanner.Plan(checkpoint, new DeviceMapOptions
        {
            MaxMemory = string.IsNullOrWhiteSpace(MaxMemory) ? null : DeviceMaps.MaxMemory.ParseText(MaxMemory),
            Strategy = DeviceMapStrategies.Parse(Strategy),
            NoSplit = NoSplit,
            DType = string.IsNullOrWhiteSpace(DType) ? null : DTypes.Parse(DType),
            Reserve = string.IsNullOrWhiteSpace(Reserve) ? 0 : ByteSize.Parse(Reserve, "Reserve"),
        });
        foreach (var line in map.Log) Log.LogMessage(MessageImportance.Low, line);
        foreach (var warning in map.Warnings) LogWarning(Errors.BigModelErrorCode.OffloadedToSlowerDevice, warning, FullPath(Checkpoint));
        if (output is not null)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(output)!);
            map.Save(output);
            Log.LogMessage(MessageImportance.Normal, "Device map written to {0}: {1}", output, map);
        }
        OffloadedBytes = map.OffloadedBytes ?? 0;
        OffloadedShare = (map.OffloadedShare ?? 0).ToString("0.####", CultureInfo.InvariantCulture);
        Devices = map.Devices.Select(d =>
        {
            var item = new TaskItem(d.Device.ToString());
            item.SetMetadata("UsedBytes", (d.UsedBytes ?? 0).ToString(CultureInfo.InvariantCulture));
            item.SetMetadata("GrantedBytes", d.GrantedBytes?.ToString(CultureInfo.InvariantCulture) ?? "");
            item.SetMetadata("Modules", string.Join(";", d.Modules));
            item.SetMetadata("IsOffload", d.IsOffload ? "true" : "false");
            return (ITaskItem)item;
        }).ToArray();
        if (FailIfOffloaded) map.ThrowIfOffloaded();
        if (output is not null) IncrementalStamp.Write(output, parameters);
    }
}
