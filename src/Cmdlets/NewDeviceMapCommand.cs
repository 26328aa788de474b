using System.Collections;
using System.Management.Automation;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Cmdlets.Infrastructure;
using BigModel.DeviceMaps;
using BigModel.Errors;
using BigModel.IO;

namespace BigModel.Cmdlets;

/// <summary>Decides which block of a model lives on which GPU, on the CPU or on disk, as Accelerate does.</summary>
/// <remarks>
/// <para>Plans with Accelerate's algorithms and gives the same results on the same inputs: budgets per device in Accelerate's order (GPUs, then cpu, then disk), get_balanced_memory for the balanced strategies (auto is balanced), infer_auto_device_map (sequential fill, the largest layer's size kept free on the main devices, splitting modules that do not fit when they may be split, tied parameters kept together, falling through to cpu and then disk) and clean_device_map.</para>
/// <para>Blocks that are never split come from the architecture (Llama/Mistral/Qwen2 decoder layers, BERT layers and embeddings, GPT-2 blocks) plus -NoSplit patterns. The output head tied to the input embedding (tie_word_embeddings) always lands with it, as do the groups given to -TiedParameters.</para>
/// <para>Without -MaxMemory the free memory of this machine is measured: free memory of each CUDA device, and the RAM actually available to this process, container (cgroup) limits included. Budgets may name devices this machine does not have, so a CI agent without GPUs can plan for a GPU server.</para>
/// <para>The result lists each module's device and, per device, the bytes used and granted. -OutFile writes the JSON that transformers' from_pretrained(device_map=...) and Accelerate's dispatch_model read; -ChartFile draws the map (SVG, or HTML with the summary table). -Verbose explains every placement.</para>
/// </remarks>
/// <example>
/// <code>New-DeviceMap ./Llama-2-13b-hf -MaxMemory @{ 0 = '24GiB'; 1 = '24GiB'; cpu = '64GiB' } -DType float16 -OutFile map.json</code>
/// <para>Plans a 13B model for two 24 GiB GPUs with CPU and disk offload and writes the map for transformers.</para>
/// </example>
/// <example>
/// <code>New-DeviceMap ./model -MaxMemory @{ cpu = '2GB' } -ChartFile map.html -Verbose</code>
/// <para>Plans for a 2 GB CPU budget (the rest goes to disk), explains each placement and draws the map.</para>
/// </example>
/// <example>
/// <code>Get-Checkpoint ./model | New-DeviceMap -MaxMemory @{ 'cuda:0' = '80GB' } -FailIfOffloaded</code>
/// <para>Fails (BigModel.ModelDoesNotFit) when the model would not fit on one 80 GB GPU.</para>
/// </example>
/// <returns>BigModel.DeviceMaps.DeviceMap: Entries (module, device, bytes), Devices (per-device usage), OffloadedBytes, Warnings, Log.</returns>
[Cmdlet(VerbsCommon.New, "DeviceMap", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
[OutputType(typeof(DeviceMap))]
public sealed class NewDeviceMapCommand : BigModelCmdlet
{
    private const string PathSet = "Path";
    private const string CheckpointSet = "Checkpoint";

    /// <summary>A checkpoint (file, index or folder), or a bare config.json to plan before downloading.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath")]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>A checkpoint from Get-Checkpoint.</summary>
    [Parameter(Mandatory = true, ParameterSetName = CheckpointSet, ValueFromPipeline = true)]
    public Checkpoint? Checkpoint { get; set; }

    /// <summary>Memory per device: keys 0, 1 or 'cuda:0' for GPUs, 'cpu', 'disk'; values bytes or sizes such as '10GiB' (binary) or '8GB' (decimal). Omitted: this machine's free memory.</summary>
    [Parameter]
    public Hashtable? MaxMemory { get; set; }

    /// <summary>auto (= balanced), sequential, balanced or balanced_low_0, as transformers' device_map strategies.</summary>
    [Parameter]
    [ValidateSet("auto", "sequential", "balanced", "balanced_low_0", IgnoreCase = true)]
    public string Strategy { get; set; } = "auto";

    /// <summary>Module-name patterns to keep on one device, in addition to the architecture's blocks, e.g. 'model.layers.*'.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(ModuleNameCompleter))]
    public string[] NoSplit { get; set; } = [];

    /// <summary>Groups of tensor names that share storage and must land on one device, e.g. @(,@('lm_head.weight', 'model.embed_tokens.weight')).</summary>
    [Parameter]
    [ArgumentCompleter(typeof(TensorNameCompleter))]
    public string[][] TiedParameters { get; set; } = [];

    /// <summary>The dtype weights will be loaded in; floating-point tensors wider than it count at its width.</summary>
    [Parameter]
    [ValidateSet("float32", "float16", "bfloat16", "float64", IgnoreCase = true)]
    public string? DType { get; set; }

    /// <summary>Memory held back on every device but disk (activations, KV cache, the runtime), e.g. '2GiB'.</summary>
    [Parameter]
    public string? Reserve { get; set; }

    /// <summary>The model family when the checkpoint has no config.json (for its no-split blocks and forward order).</summary>
    [Parameter]
    [ArgumentCompleter(typeof(ArchitectureCompleter))]
    public string? Architecture { get; set; }

    /// <summary>Write the map as Accelerate/transformers JSON to this file.</summary>
    [Parameter]
    public string? OutFile { get; set; }

    /// <summary>Draw the map to this file: .svg for the chart alone, .html for the chart with the summary table.</summary>
    [Parameter]
    public string? ChartFile { get; set; }

    /// <summary>Fail when anything is offloaded: to disk always, to cpu when GPUs are in the budget (for CI).</summary>
    [Parameter]
    public SwitchParameter FailIfOffloaded { get; set; }

    protected override void ProcessRecord()
    {
        try
        {
            var options = new DeviceMapOptions
            {
                MaxMemory = MaxMemory is null ? null : DeviceMaps.MaxMemory.FromDictionary(MaxMemory),
                Strategy = DeviceMapStrategies.Parse(Strategy),
                NoSplit = NoSplit,
                TiedParameters = TiedParameters.Select(g => (IReadOnlyList<string>)g).ToList(),
                DType = DType is null ? null : DTypes.Parse(DType),
                Reserve = Reserve is null ? 0 : ByteSize.Parse(Reserve, "Reserve"),
            };
            var map = Plan(options);
            foreach (var line in map.Log) WriteVerbose(line);
            foreach (var warning in map.Warnings) WriteWarning(warning);
            if (OutFile is not null)
            {
                var target = ResolveNewPath(OutFile);
                if (ShouldProcess(target, "Write device map JSON")) map.Save(target);
            }
            if (ChartFile is not null)
            {
                var target = ResolveNewPath(ChartFile);
                if (ShouldProcess(target, "Write device map chart")) DeviceMapChart.Save(map, target);
            }
            if (FailIfOffloaded) map.ThrowIfOffloaded();
            WriteObject(map);
        }
        catch (BigModelException e)
        {
            WriteBigModelError(e, Checkpoint?.Path ?? Path);
        }
    }

    private DeviceMap Plan(DeviceMapOptions options)
    {
        var spec = Architecture is null ? null : ArchitectureCatalog.ByFamily(Architecture);
        if (Checkpoint is not null)
            return DeviceMapPlanner.Plan(Checkpoint.Tensors, spec ?? Checkpoint.Architecture, Checkpoint.Config, options, Checkpoint.Path);
        var path = ResolvePaths(Path).Single();
        if (System.IO.Path.GetFileName(path).Equals("config.json", StringComparison.OrdinalIgnoreCase))
            return DeviceMapPlanner.PlanFromConfig(ModelConfig.Load(path), options);
        var checkpoint = Checkpoints.Checkpoint.Open(path);
        var tensors = spec is null ? checkpoint.Tensors : TensorOrder.Sort(checkpoint.Tensors, spec);
        return DeviceMapPlanner.Plan(tensors, spec ?? checkpoint.Architecture, checkpoint.Config, options, checkpoint.Path);
    }
}
