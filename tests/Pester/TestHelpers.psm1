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

function Get-FixturePath {
    param([Parameter(Mandatory)] [string] $Name)
    if ($env:BIGMODEL_FIXTURES) { return Join-Path $env:BIGMODEL_FIXTURES $Name }
    Join-Path (Get-RepositoryRoot) "artifacts/fixtures/$Name"
}

function Test-MemoryCgroupSupport {
    <# Why a memory cgroup cannot be made here, or nothing when it can (root, cgroup v1 memory or v2). #>
    if (-not $IsLinux) { return 'memory cgroups exist only on Linux' }
    if ((id -u) -ne '0') { return 'creating a memory cgroup needs root' }
    if (-not (Test-Path /sys/fs/cgroup/memory) -and -not (Test-Path /sys/fs/cgroup/cgroup.controllers)) { return 'no cgroup memory controller is mounted' }
}

function New-MemoryCgroup {
    <# Creates a memory cgroup (v1 where mounted, else v2) and returns its folder. #>
    param([Parameter(Mandatory)] [string] $Name)
    if (Test-Path /sys/fs/cgroup/memory) { $path = "/sys/fs/cgroup/memory/$Name" }
    else {
        Add-Content -Path /sys/fs/cgroup/cgroup.subtree_control -Value '+memory' -NoNewline
        $path = "/sys/fs/cgroup/$Name"
    }
    New-Item -ItemType Directory -Path $path -Force | Out-Null
    $path
}

function Set-MemoryCgroupLimit {
    param([Parameter(Mandatory)] [string] $Path, [Parameter(Mandatory)] [long] $Bytes)
    $file = if (Test-Path "$Path/memory.limit_in_bytes") { "$Path/memory.limit_in_bytes" } else { "$Path/memory.max" }
    [IO.File]::WriteAllText($file, "$Bytes")
}

function Get-MemoryCgroupPeak {
    param([Parameter(Mandatory)] [string] $Path)
    $file = if (Test-Path "$Path/memory.max_usage_in_bytes") { "$Path/memory.max_usage_in_bytes" } else { "$Path/memory.peak" }
    [long](Get-Content $file)
}

function Remove-MemoryCgroup {
    param([Parameter(Mandatory)] [string] $Path)
    for ($i = 0; $i -lt 50 -and (Test-Path $Path); $i++) {
        try { [IO.Directory]::Delete($Path) } catch { Start-Sleep -Milliseconds 100 }
    }
}

function Invoke-InMemoryCgroup {
    <#
        Runs a PowerShell script in a new pwsh process inside the cgroup (a shell puts itself in the cgroup, then execs
        pwsh, so everything the run allocates is charged there) and returns what the script printed, parsed as JSON.
        The page cache is dropped first, so nothing read earlier outside the cgroup is served to it for free.
    #>
    param([Parameter(Mandatory)] [string] $Cgroup, [Parameter(Mandatory)] [string] $Script, [string[]] $Arguments = @())
    sync
    [IO.File]::WriteAllText('/proc/sys/vm/drop_caches', '1')
    $scriptFile = Join-Path ([IO.Path]::GetTempPath()) ("bm-cgroup-" + [guid]::NewGuid().ToString('N') + '.ps1')
    Set-Content -Path $scriptFile -Value $Script
    try {
        # pwsh may run as a dotnet tool ("dotnet pwsh.dll") or as its own executable.
        $host_ = [Environment]::ProcessPath
        $pwsh = if ([IO.Path]::GetFileNameWithoutExtension($host_) -eq 'dotnet') { @($host_, [Reflection.Assembly]::GetEntryAssembly().Location) } else { @($host_) }
        $output = & /bin/sh -c 'echo $$ > "$0" && exec "$@"' "$Cgroup/cgroup.procs" @pwsh -NoLogo -NoProfile -NonInteractive -File $scriptFile @Arguments 2>&1
        $json = @($output | ForEach-Object { "$_" } | Where-Object { $_.StartsWith('{') }) | Select-Object -Last 1
        if (-not $json) { throw "The pwsh process in $Cgroup printed no result (exit code $LASTEXITCODE): $($output -join "`n")" }
        $json | ConvertFrom-Json
    }
    finally { Remove-Item $scriptFile -ErrorAction SilentlyContinue }
}

Export-ModuleMember -Function *
