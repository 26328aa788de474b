using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using BigModel.Architectures;
using BigModel.DeviceMaps;

namespace BigModel.Cmdlets.Infrastructure;

/// <summary>Completes module names of the checkpoint given to -Path (for -NoSplit and similar).</summary>
public sealed class ModuleNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters) =>
        CompletionSources.Complete(CompletionSources.ModuleNames(fakeBoundParameters), wordToComplete);
}

/// <summary>Completes devices: the CUDA devices this machine has, then cpu and disk.</summary>
public sealed class DeviceCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        // CudaMemory never throws: without a usable CUDA it returns no devices, leaving cpu and disk.
        var devices = Memory.CudaMemory.Devices(null).Select(d => Device.Gpu(d.Index).ToString()).ToList();
        devices.Add("cpu");
        devices.Add("disk");
        return CompletionSources.Complete(devices, wordToComplete);
    }
}

/// <summary>Completes the model families BigModel knows.</summary>
public sealed class ArchitectureCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters) =>
        CompletionSources.Complete(ArchitectureCatalog.All.Select(a => a.Family), wordToComplete);
}

/// <summary>Completes device-map strategies (files complete as paths anyway).</summary>
public sealed class StrategyCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters) =>
        CompletionSources.Complete(BigModel.Inference.InferencePlacement.StrategyNames, wordToComplete);
}
