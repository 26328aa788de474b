# Shared by the Pester suites: module import, paths, and small checkpoints written through BigModel's own writer.

function Import-BigModelUnderTest {
    $module = if ($env:BIGMODEL_MODULE) { $env:BIGMODEL_MODULE } else { Join-Path $PSScriptRoot '../../artifacts/module/BigModel/BigModel.psd1' }
    Import-Module $module -Force -Global -ErrorAction Stop
}

function Get-RepositoryRoot { (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path }

function Get-Stories260KPath {
    if ($env:BIGMODEL_STORIES260K) { return $env:BIGMODEL_STORIES260K }
    Join-Path (Get-RepositoryRoot) '../shared/models/stories260K'
}

function Get-MiniLMPath {
    if ($env:BIGMODEL_FIXTURES) { return Join-Path $env:BIGMODEL_FIXTURES 'minilm' }
    Join-Path (Get-RepositoryRoot) 'artifacts/fixtures/minilm'
}

function Test-Stories260K { Test-Path (Join-Path (Get-Stories260KPath) 'model.safetensors') }

function New-TestSafetensors {
    <# Writes a safetensors file; -Tensors is a list of @{ Name; DType; Shape } and data is a byte pattern. #>
    param([Parameter(Mandatory)] [string] $Path, [Parameter(Mandatory)] [object[]] $Tensors)
    $specs = [System.Collections.Generic.List[BigModel.Checkpoints.TensorSpec]]::new()
    foreach ($t in $Tensors) {
        $specs.Add([BigModel.Checkpoints.TensorSpec]::new($t.Name, [BigModel.Checkpoints.DType]$t.DType, [long[]]$t.Shape))
    }
    $layout = [BigModel.Checkpoints.SafetensorsLayout]::Create($specs, $null)
    New-Item -ItemType Directory -Force -Path (Split-Path $Path) | Out-Null
    $writer = [BigModel.Checkpoints.SafetensorsWriter]::new($Path, $layout, 65536)
    try {
        foreach ($entry in $layout.Tensors) {
            $bytes = [byte[]]::new($entry.Item1.ByteLength)
            for ($i = 0; $i -lt $bytes.Length; $i++) { $bytes[$i] = ($i * 7 + 3) % 251 }
            $writer.Write($bytes, 0, $bytes.Length)
        }
        $writer.Complete()
    }
    finally { $writer.Dispose() }
    $Path
}

function New-SparseCheckpoint {
    <#
        A checkpoint with exactly the tensors config.json implies, written as a sparse file: the header is real,
        the data region a hole, so a full-size model costs neither disk nor time.
    #>
    param([Parameter(Mandatory)] [string] $ConfigJson, [Parameter(Mandatory)] [string] $Folder)
    New-Item -ItemType Directory -Force -Path $Folder | Out-Null
    $configPath = Join-Path $Folder 'config.json'
    Set-Content -Path $configPath -Value $ConfigJson
    $config = [BigModel.Architectures.ModelConfig]::Load($configPath)
    $spec = [BigModel.Architectures.ArchitectureCatalog]::Require($config)
    $specs = [System.Collections.Generic.List[BigModel.Checkpoints.TensorSpec]]::new()
    foreach ($t in $spec.TensorsFromConfig($config)) {
        $specs.Add([BigModel.Checkpoints.TensorSpec]::new($t.Name, [BigModel.Checkpoints.DType]::F32, $t.Shape))
    }
    $layout = [BigModel.Checkpoints.SafetensorsLayout]::Create($specs, $null)
    $file = [System.IO.File]::Create((Join-Path $Folder 'model.safetensors'))
    try {
        $file.Write([BitConverter]::GetBytes([uint64]$layout.Header.Length), 0, 8)
        $file.Write($layout.Header, 0, $layout.Header.Length)
        $file.SetLength($layout.FileLength)
    }
    finally { $file.Dispose() }
    $Folder
}

Export-ModuleMember -Function *
