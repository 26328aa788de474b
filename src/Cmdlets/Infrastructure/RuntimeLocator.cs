using System.Management.Automation;
using BigModel.Inference;

namespace BigModel.Cmdlets.Infrastructure;

/// <summary>
/// Finds the native runtime for the module: bundled beside it (a build output), named by BIGMODEL_RUNTIME, or the
/// per-platform runtime module (BigModel.Runtime.&lt;rid&gt;) installed where PowerShell finds modules, preferring
/// the version of this module.
/// </summary>
internal static class RuntimeLocator
{
    public static void Ensure(PSCmdlet cmdlet)
    {
        if (NativeRuntime.IsAvailable || Environment.GetEnvironmentVariable(NativeRuntime.EnvironmentVariable) is { Length: > 0 }) return;
        var version = typeof(RuntimeLocator).Assembly.GetName().Version;
        var found = cmdlet.InvokeCommand.InvokeScript(
            $"Get-Module -ListAvailable -Name '{NativeRuntime.PackageName}' | Sort-Object Version -Descending")
            .Select(o => o.BaseObject).OfType<PSModuleInfo>().ToList();
        var module = found.FirstOrDefault(m => version is not null && m.Version.Major == version.Major && m.Version.Minor == version.Minor && m.Version.Build == version.Build)
            ?? found.FirstOrDefault();
        if (module is not null)
        {
            cmdlet.WriteVerbose($"Using the native runtime of {module.Name} {module.Version} at {module.ModuleBase}.");
            NativeRuntime.Use(module.ModuleBase);
        }
    }
}
