@{
    RootModule           = 'BigModel.Cmdlets.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = '6f1c2b0e-5a7d-4e63-9a41-0b8d2f7c9e15'
    Author               = 'BigModel contributors'
    CompanyName          = 'BigModel'
    Copyright            = '(c) BigModel contributors. MIT License.'
    Description          = 'Inspect, size, reshard and run neural-network checkpoints bigger than your GPU or RAM: safetensors and PyTorch checkpoints, Accelerate-compatible device maps, offloaded inference on TorchSharp.'
    # The module's assemblies target .NET 10, which PowerShell runs on from 7.6.
    PowerShellVersion    = '7.6'
    CompatiblePSEditions = @('Core')
    # Loaded up front so scripts can use BigModel's types ([BigModel.IO.ByteSize]::Parse('5GB')) before any cmdlet runs.
    RequiredAssemblies   = @('BigModel.Core.dll')
    FormatsToProcess     = @('BigModel.Format.ps1xml')
    CmdletsToExport      = @('Get-Checkpoint', 'Test-Checkpoint', 'Get-ModelMemory', 'New-DeviceMap', 'Split-Checkpoint', 'Invoke-BigModel')
    FunctionsToExport    = @()
    AliasesToExport      = @()
    VariablesToExport    = @()
    PrivateData          = @{
        PSData = @{
            Tags         = @('AI', 'MachineLearning', 'LLM', 'safetensors', 'PyTorch', 'TorchSharp', 'Inference', 'HuggingFace', 'Linux', 'Windows')
            LicenseUri   = 'https://opensource.org/licenses/MIT'
            ProjectUri   = 'https://github.com/bigmodel-dotnet/bigmodel'
            ReleaseNotes = 'Checkpoint inspection, validation and memory estimates.'
        }
    }
}
