using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.DeviceMaps;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace BigModel.Build.Tasks;

/// <summary>Plans an Accelerate device map (New-DeviceMap) and writes its JSON; can fail the build on offload.</summary>
public sealed class NewDeviceMap : BigModelTask
{
    /// <summary>A checkpoint (file, index or folder), or a config.json to plan a model not downloaded yet.</summary>
    [Required] public ITaskItem Checkpoint { get; set; } = null!;
    /// <summary>Budget as <c>0=24GiB;1=24GiB;cpu=64GiB</c> or Accelerate's JSON; empty measures the build machine.</summary>
    public string? MaxMemory { get; set; }
    public string Strategy { get; set; } = "auto";
    public string[] NoSplit { get; set; } = [];
    public string? DType { get; set; }
    public string? Reserve { get; set; }
    /// <summary>Where to write the JSON map; empty writes <see cref="DefaultFileName"/> into <see cref="OutputDirectory"/>.</summary>
    public ITaskItem? OutputFile { get; set; }
    /// <summary>The folder of maps without an <see cref="OutputFile"/> ($(BigModelOutputPath)).</summary>
    public string? OutputDirectory { get; set; }
    /// <summary>Fail (BM1601/BM1603) when anything lands on disk, or on cpu while GPUs are budgeted.</summary>
    public bool FailIfOffloaded { get; set; }

    [Output] public long OffloadedBytes { get; private set; }
    [Output] public string OffloadedShare { get; private set; } = "0";
    /// <summary>One item per device with UsedBytes, GrantedBytes, Modules metadata.</summary>
    [Output] public ITaskItem[] Devices { get; private set; } = [];

    /// <summary>The map file written (or found current).</summary>
    [Output] public string MapFile { get; private set; } = "";

    /// <summary>True when the map was already current and planning was skipped.</summary>
    [Output] public bool Skipped { get; private set; }

    protected override void Run()
    {
        var source = FullPath(Checkpoint);
        bool fromConfig = ModelConfig.IsConfigFile(source);
        var checkpoint = fromConfig ? null : Checkpoints.Checkpoint.Open(source);
        var options = DeviceMapOptions.FromText(string.IsNullOrWhiteSpace(MaxMemory) ? null : DeviceMaps.MaxMemory.ParseText(MaxMemory),
            Strategy, DType, Reserve, NoSplit);
        var output = OutputFile is not null ? FullPath(OutputFile)
            : OutputDirectory is { Length: > 0 } folder ? Path.Combine(Path.GetFullPath(folder), DefaultFileName(source))
            : null;
        var parameters = string.Join("|", source, MaxMemory, Strategy, string.Join(",", NoSplit), DType, Reserve, FailIfOffloaded, ToolVersion);
        var inputs = checkpoint is null ? [source] : checkpoint.Files.Append(Path.Combine(checkpoint.Directory, "config.json")).Where(File.Exists);

        DeviceMap map;
        if (output is not null && IncrementalStamp.IsCurrent(output, inputs, parameters))
        {
            Skipped = true;
            Log.LogMessage(MessageImportance.Normal, "{0} is up to date.", output);
            // The outputs still describe the map: measured from the file on the tensors it places.
            var tensors = checkpoint?.Tensors ?? SizedTensors(ModelConfig.Load(source));
            map = DeviceMap.Load(output).Measure(tensors, options.DType);
        }
        else
        {
            map = checkpoint is null ? DeviceMapPlanner.Plan(source, options) : DeviceMapPlanner.Plan(checkpoint, options);
            foreach (var line in map.Log) Log.LogMessage(MessageImportance.Low, line);
            foreach (var warning in map.Warnings) LogWarning(warning.Code, warning.Message, source);
            if (output is not null)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(output)!);
                map.Save(output);
                Log.LogMessage(MessageImportance.Normal, "Device map written to {0}: {1}", output, map);
            }
        }
        MapFile = output ?? "";
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
        if (output is not null && !Skipped) IncrementalStamp.Write(output, parameters);
    }

    private static IReadOnlyList<TensorInfo> SizedTensors(ModelConfig config) => ArchitectureCatalog.Require(config).SizedTensorsFromConfig(config);

    /// <summary>
    /// The map's name when none is given: the model's folder name and a short hash of the checkpoint's full path, so
    /// two models (or two config.json files) never write the same map.
    /// </summary>
    public static string DefaultFileName(string checkpointPath)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(checkpointPath));
        var folder = Directory.Exists(full) ? full : Path.GetDirectoryName(full) ?? full;
        var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(folder));
        if (name.Length == 0) name = "model";
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(full)))[..8];
        return $"{name}-{hash}.device_map.json";
    }

    /// <summary>A new BigModel plans anew: the stamp records the planner's version and build.</summary>
    private static readonly string ToolVersion = string.Join("+",
        typeof(DeviceMap).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "",
        typeof(DeviceMap).Assembly.ManifestModule.ModuleVersionId.ToString("N"),
        typeof(NewDeviceMap).Assembly.ManifestModule.ModuleVersionId.ToString("N"));
}
