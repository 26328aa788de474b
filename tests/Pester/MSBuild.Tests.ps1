BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $hasStories = Test-Stories260K
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $root = Get-RepositoryRoot
    $project = Join-Path $root 'tests/MSBuild/ModelMemory.proj'
    $buildDir = Join-Path $root 'artifacts/msbuild/BigModel.Build/'
    function Invoke-Build([string[]] $Properties) {
        $arguments = @('msbuild', $project, '-nologo', '-v:m', "-p:BigModelBuildDir=$buildDir") + ($Properties | ForEach-Object { "-p:$_" })
        $output = & dotnet @arguments 2>&1 | Out-String
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = $output }
    }
}

Describe 'The GetModelMemory MSBuild task' -Skip:(-not $hasStories) {
    It 'reports the estimate as items a project can use' {
        $r = Invoke-Build @('Budget=1GiB')
        $r.ExitCode | Should -Be 0 -Because $r.Output
        $r.Output | Should -Match 'Estimate float32: total=1040128 inference=\d+ largest=model.layers.0'
    }

    It 'fails the build with BM1600 when the budget is exceeded' {
        $r = Invoke-Build @('Budget=2MB')
        $r.ExitCode | Should -Not -Be 0
        $r.Output | Should -Match 'error BM1600'
        $r.Output | Should -Match 'over the budget of 2MB'
    }

    It 'fails with the BigModel error code for a broken checkpoint' {
        $r = Invoke-Build @("Checkpoint=$root/does-not-exist")
        $r.ExitCode | Should -Not -Be 0
        $r.Output | Should -Match 'error BM1000'
    }
}
