BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $hasStories = Test-Stories260K
    $minilm = Get-MiniLMPath
    $hasMiniLM = Test-Path (Join-Path $minilm 'model.safetensors')
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-BigModelUnderTest
    $stories = Get-Stories260KPath
    $minilm = Get-MiniLMPath
    $work = Join-Path ([IO.Path]::GetTempPath()) ("bm-pester-invoke-" + [guid]::NewGuid().ToString('N'))
    New-Item -ItemType Directory $work | Out-Null
}
AfterAll { Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue }

Describe 'Invoke-BigModel on stories260K' -Skip:(-not $hasStories) {
    BeforeAll {
        $reference = (Invoke-BigModel $stories -InputIds 1 -MaxNewTokens 24).GeneratedIds -join ','
    }

    It 'generates greedily from token ids' {
        $r = Invoke-BigModel $stories -InputIds 1 -MaxNewTokens 24
        $r.GeneratedIds.Count | Should -Be 24
        $r.StopReason | Should -Be 'MaxNewTokens'
        $r.Text | Should -BeNullOrEmpty
    }

    It 'gives the same ids with cpu and disk placements, with and without prefetch' {
        $map = New-DeviceMap $stories -MaxMemory @{ cpu = '600KB' } -WarningAction SilentlyContinue
        ($map | Invoke-BigModel -InputIds 1 -MaxNewTokens 24).GeneratedIds -join ',' | Should -Be $reference
        ($map | Invoke-BigModel -InputIds 1 -MaxNewTokens 24 -NoPrefetch).GeneratedIds -join ',' | Should -Be $reference
        $allDisk = New-DeviceMap $stories -MaxMemory @{ cpu = '1KB' } -WarningAction SilentlyContinue
        ($allDisk | Invoke-BigModel -InputIds 1 -MaxNewTokens 24).GeneratedIds -join ',' | Should -Be $reference
        foreach ($access in 'Mapped', 'Copied', 'Direct') {
            ($allDisk | Invoke-BigModel -InputIds 1 -MaxNewTokens 24 -DiskAccess $access).GeneratedIds -join ',' | Should -Be $reference
        }
    }

    It 'gives the same ids with the native linear kernel and with libtorch' {
        (Invoke-BigModel $stories -InputIds 1 -MaxNewTokens 24 -LinearKernel LibTorch).GeneratedIds -join ',' | Should -Be $reference
        (Invoke-BigModel $stories -InputIds 1 -MaxNewTokens 24 -LinearKernel Auto).GeneratedIds -join ',' | Should -Be $reference
    }

    It 'reads an Accelerate device map JSON written by New-DeviceMap' {
        $file = Join-Path $work 'map.json'
        New-DeviceMap $stories -MaxMemory @{ cpu = '600KB' } -OutFile $file -WarningAction SilentlyContinue | Out-Null
        (Invoke-BigModel $stories -DeviceMap $file -InputIds 1 -MaxNewTokens 24).GeneratedIds -join ',' | Should -Be $reference
    }

    It 'samples reproducibly with a seed' {
        $a = Invoke-BigModel $stories -InputIds 1 -MaxNewTokens 16 -Temperature 0.8 -TopK 40 -TopP 0.9 -Seed 42
        $b = Invoke-BigModel $stories -InputIds 1 -MaxNewTokens 16 -Temperature 0.8 -TopK 40 -TopP 0.9 -Seed 42
        ($a.GeneratedIds -join ',') | Should -Be ($b.GeneratedIds -join ',')
        $a.Seed | Should -Be 42
    }

    It 'refuses a prompt for a model without a tokenizer, naming what is missing' {
        { Invoke-BigModel $stories -Prompt 'Once upon a time' -ErrorAction Stop } | Should -Throw -ErrorId 'BigModel.TokenizerMissing,*'
    }

    It 'refuses token ids outside the vocabulary' {
        { Invoke-BigModel $stories -InputIds 100000 -ErrorAction Stop } | Should -Throw -ErrorId 'BigModel.InvalidGenerationInput,*'
    }

    It 'refuses a -DeviceMap that is neither a file nor a strategy' {
        { Invoke-BigModel $stories -InputIds 1 -DeviceMap 'nowhere.json' -ErrorAction Stop } | Should -Throw -ErrorId 'BigModel.InvalidDeviceMap,*'
    }
}

Describe 'Invoke-BigModel on all-MiniLM-L6-v2' -Skip:(-not $hasMiniLM) {
    It 'ranks a paraphrase above an unrelated sentence, under any placement' {
        foreach ($memory in @(@{ cpu = '1GB' }, @{ cpu = '40MB' }, @{ cpu = '1KB' })) {
            $e = Invoke-BigModel $minilm -MaxMemory $memory -Text 'A man is eating food.', 'A man is eating a piece of bread.', 'The girl is carrying a baby.' -WarningAction SilentlyContinue
            $e.Count | Should -Be 3
            $e[0].Dimensions | Should -Be 384
            $e[0].Similarity($e[1]) | Should -BeGreaterThan ($e[0].Similarity($e[2]))
        }
    }

    It 'refuses to generate text with an encoder' {
        { Invoke-BigModel $minilm -Prompt 'hello' -ErrorAction Stop } | Should -Throw -ErrorId 'BigModel.ModelKindMismatch,*'
    }
}

Describe 'The InvokeBigModel MSBuild task' -Skip:(-not $hasStories) {
    BeforeAll {
        $root = Get-RepositoryRoot
        $project = Join-Path $root 'tests/MSBuild/Smoke.proj'
        $buildDir = Join-Path $root 'artifacts/msbuild/BigModel.Build/'
        $runtime = Join-Path $root "artifacts/runtime/BigModel.Runtime.linux-x64/"
        $expected = ((Invoke-BigModel $stories -InputIds 1 -MaxNewTokens 8).GeneratedIds | Select-Object -First 3) -join '%2C'
        function Invoke-SmokeBuild([string[]] $Properties) {
            $arguments = @('msbuild', $project, '-nologo', '-v:m', "-p:BigModelBuildDir=$buildDir", "-p:BigModelRuntimeDirectory=$runtime") + ($Properties | ForEach-Object { "-p:$_" })
            $output = & dotnet @arguments 2>&1 | Out-String
            [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = $output }
        }
    }

    It 'runs the model out of process and passes when the output starts as expected' {
        $r = Invoke-SmokeBuild @("ExpectedIds=$expected")
        $r.ExitCode | Should -Be 0 -Because $r.Output
        $r.Output | Should -Match "Smoke: $($expected -replace '%2C', ',')"
    }

    It 'fails with BM1908 when the output differs, also with layers on disk' {
        $r = Invoke-SmokeBuild @('ExpectedIds=1%2C2%2C3', 'MaxMemory=cpu=600KB')
        $r.ExitCode | Should -Not -Be 0
        $r.Output | Should -Match 'error BM1908'
    }
}
