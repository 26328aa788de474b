# Bigger than memory, for real: a checkpoint runs inside a memory cgroup that holds the runtime and only half of the
# weights, so neither the process nor the page cache can keep the model, and every token reads the rest from disk.
BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $skipReason = Test-MemoryCgroupSupport
    if (-not $skipReason -and -not (Test-Path (Join-Path (Get-FixturePath 'llama-400m') 'model.safetensors'))) {
        $skipReason = 'the llama-400m fixture is missing (./build.sh --target=Fixtures makes it)'
    }
    if ($skipReason) { Write-Host "Skipping the memory cgroup tests: $skipReason." }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-BigModelUnderTest
}

Describe 'Invoke-BigModel in a memory cgroup smaller than the model' -Skip:([bool]$skipReason) {
    BeforeAll {
        $model = Get-FixturePath 'llama-400m'
        $tiny = Get-FixturePath 'llama-tiny'
        $modulePath = Join-Path (Get-Module BigModel).ModuleBase 'BigModel.psd1'
        # The run in the cgroup: no budget given, so BigModel measures the memory the cgroup leaves it.
        $run = @'
param($Module, $Model, $Map)
$ErrorActionPreference = 'Stop'
try {
    Import-Module $Module
    $parameters = @{ LiteralPath = $Model; InputIds = 1; MaxNewTokens = 6 }
    if ($Map) { $parameters.DeviceMap = $Map }
    $records = @(Invoke-BigModel @parameters -Verbose 4>&1)
    $verbose = @($records | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message)
    $result = @($records | Where-Object { $_ -isnot [System.Management.Automation.VerboseRecord] })[-1]
    [ordered]@{ ok = $true; ids = @($result.GeneratedIds); verbose = $verbose } | ConvertTo-Json -Compress
}
catch {
    [ordered]@{ ok = $false; errorId = $_.FullyQualifiedErrorId; message = $_.Exception.Message } | ConvertTo-Json -Compress
}
'@
        $reference = (Invoke-BigModel -LiteralPath $model -InputIds 1 -MaxNewTokens 6).GeneratedIds -join ','
        $modelBytes = (Get-ChildItem $model -Filter *.safetensors | Measure-Object Length -Sum).Sum
        $cgroup = New-MemoryCgroup "bigmodel-pester-$PID"
        # The runtime's own footprint (pwsh, the module, libtorch, their page cache): the peak of a tiny model's run.
        $tinyRun = Invoke-InMemoryCgroup -Cgroup $cgroup -Script $run -Arguments $modulePath, $tiny
        $tinyRun.ok | Should -BeTrue -Because $tinyRun.message
        $runtime = Get-MemoryCgroupPeak $cgroup
        $limit = $runtime + [long]($modelBytes / 2)
        Set-MemoryCgroupLimit -Path $cgroup -Bytes $limit
        Write-Host "Runtime footprint $([math]::Round($runtime / 1MB)) MiB; cgroup limit $([math]::Round($limit / 1MB)) MiB for $([math]::Round($modelBytes / 1MB)) MiB of weights."
    }
    AfterAll { if ($cgroup) { Remove-MemoryCgroup $cgroup } }

    It 'offloads on its own, with no budget given, and generates what the resident run generates' {
        $r = Invoke-InMemoryCgroup -Cgroup $cgroup -Script $run -Arguments $modulePath, $model
        $r.ok | Should -BeTrue -Because $r.message
        ($r.ids -join ',') | Should -Be $reference
        $placement = @($r.verbose | Where-Object { $_ -like 'Placement:*' })
        $placement | Should -Not -BeNullOrEmpty
        $placement[0] | Should -Match 'disk'
        $placement[0] | Should -Match 'cpu'
        (Get-MemoryCgroupPeak $cgroup) | Should -BeLessOrEqual $limit
    }

    It 'refuses a map that puts the whole model on the cpu before loading anything, naming the numbers' {
        $map = Join-Path ([IO.Path]::GetTempPath()) "bm-cpu-map-$PID.json"
        Set-Content -Path $map -Value '{"": "cpu"}'
        try {
            $r = Invoke-InMemoryCgroup -Cgroup $cgroup -Script $run -Arguments $modulePath, $model, $map
            $r.ok | Should -BeFalse
            $r.errorId | Should -BeLike 'BigModel.MemoryBudgetExceeded,*'
            $r.message | Should -Match 'bytes\) of host memory is available'
            $r.message | Should -Match 'keeps .* \(\d+ bytes\) of weights in host memory'
        }
        finally { Remove-Item $map -ErrorAction SilentlyContinue }
    }
}
