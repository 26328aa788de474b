BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $hasStories = Test-Stories260K
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-BigModelUnderTest
    $stories = Get-Stories260KPath
    $work = Join-Path ([IO.Path]::GetTempPath()) ("bm-pester-map-" + [guid]::NewGuid().ToString('N'))
    New-Item -ItemType Directory $work | Out-Null
}
AfterAll { Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue }

Describe 'New-DeviceMap' -Skip:(-not $hasStories) {
    It 'plans everything on one device when it fits' {
        $map = New-DeviceMap $stories -MaxMemory @{ cpu = '1GB' }
        $map.Entries.Count | Should -Be 1
        $map.Entries[0].Module | Should -Be ''
        $map.Entries[0].Device.ToString() | Should -Be 'cpu'
        $map.OffloadedBytes | Should -Be 0
    }

    It 'spills to disk under a small cpu budget, keeping the tied head with the embedding' {
        $map = New-DeviceMap $stories -MaxMemory @{ cpu = '600KB' } -WarningVariable warnings -WarningAction SilentlyContinue
        $devices = @{}
        foreach ($e in $map.Entries) { $devices[$e.Module] = $e.Device.ToString() }
        $devices['model.embed_tokens'] | Should -Be 'cpu'
        $devices['lm_head'] | Should -Be 'cpu'
        $devices['model.layers.4'] | Should -Be 'disk'
        $map.OffloadedBytes | Should -BeGreaterThan 0
        ($warnings -join ' ') | Should -Match 'does not fit without disk'
    }

    It 'plans for GPUs this machine does not have, with Accelerate device order' {
        $map = New-DeviceMap $stories -MaxMemory @{ 1 = '500KB'; 'cuda:0' = '500KB'; cpu = '10MB' } -Strategy sequential -WarningAction SilentlyContinue
        ($map.Devices | ForEach-Object { $_.Device.ToString() }) | Should -Be @('cuda:0', 'cuda:1', 'cpu')
        $map.Entries[0].Device.ToString() | Should -Be 'cuda:0'
    }

    It 'writes JSON that reads back as Accelerate key/value pairs' {
        $file = Join-Path $work 'map.json'
        New-DeviceMap $stories -MaxMemory @{ 0 = '400KB'; cpu = '400KB' } -Strategy sequential -OutFile $file -WarningAction SilentlyContinue | Out-Null
        $json = Get-Content $file -Raw | ConvertFrom-Json -AsHashtable
        $json['model.embed_tokens'] | Should -Be 0
        $json.Values | Should -Contain 'disk'
        ($json.Values | Where-Object { $_ -is [string] }) | Should -Not -Contain 'cuda:0'
    }

    It 'does not write with -WhatIf' {
        $file = Join-Path $work 'whatif.json'
        New-DeviceMap $stories -MaxMemory @{ cpu = '1GB' } -OutFile $file -ChartFile (Join-Path $work 'c.svg') -WhatIf | Out-Null
        $file | Should -Not -Exist
    }

    It 'draws the map as SVG and HTML' {
        New-DeviceMap $stories -MaxMemory @{ cpu = '600KB' } -ChartFile (Join-Path $work 'map.svg') -WarningAction SilentlyContinue | Out-Null
        New-DeviceMap $stories -MaxMemory @{ cpu = '600KB' } -ChartFile (Join-Path $work 'map.html') -WarningAction SilentlyContinue | Out-Null
        [xml](Get-Content (Join-Path $work 'map.svg') -Raw) | Should -Not -BeNullOrEmpty
        Get-Content (Join-Path $work 'map.html') -Raw | Should -Match '<svg'
    }

    It 'explains every placement with -Verbose' {
        $verbose = New-DeviceMap $stories -MaxMemory @{ cpu = '600KB' } -Verbose -WarningAction SilentlyContinue 4>&1 |
            Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }
        ($verbose.Message -join "`n") | Should -Match 'model.layers.1'
    }

    It 'fails with -FailIfOffloaded and names the numbers' {
        { New-DeviceMap $stories -MaxMemory @{ cpu = '600KB' } -FailIfOffloaded -ErrorAction Stop -WarningAction SilentlyContinue } |
            Should -Throw -ErrorId 'BigModel.ModelDoesNotFit,BigModel.Cmdlets.NewDeviceMapCommand'
    }

    It 'accepts a checkpoint from the pipeline and keeps -NoSplit blocks whole' {
        $map = Get-Checkpoint $stories | New-DeviceMap -MaxMemory @{ 0 = '150KB'; cpu = '10MB' } -NoSplit 'model.embed_tokens' -Strategy sequential -WarningAction SilentlyContinue
        $map.Entries.Module | Should -Not -Contain 'model.embed_tokens.weight'
    }

    It 'plans one map per wildcard match, and refuses one output file for several' {
        $twins = Join-Path $work 'twins'
        foreach ($n in 'a', 'b') {
            New-Item -ItemType Directory -Force (Join-Path $twins $n) | Out-Null
            Copy-Item (Join-Path $stories '*') (Join-Path $twins $n)
        }
        $maps = @(New-DeviceMap (Join-Path $twins '*') -MaxMemory @{ cpu = '1GB' })
        $maps.Count | Should -Be 2
        $maps.Source | Should -Be @((Join-Path $twins 'a'), (Join-Path $twins 'b'))
        { New-DeviceMap (Join-Path $twins '*') -MaxMemory @{ cpu = '1GB' } -OutFile (Join-Path $work 'one.json') -ErrorAction Stop } |
            Should -Throw -ErrorId 'BigModel.InvalidArgument,BigModel.Cmdlets.NewDeviceMapCommand'
    }

    It 'takes -LiteralPath for folders whose names hold wildcard characters' {
        $odd = Join-Path $work 'model[v1]'
        New-Item -ItemType Directory -Force -Path $odd | Out-Null
        foreach ($f in Get-ChildItem $stories -File) { [IO.File]::Copy($f.FullName, [IO.Path]::Combine($odd, $f.Name)) }
        $map = New-DeviceMap -LiteralPath $odd -MaxMemory @{ cpu = '1GB' }
        $map.Source | Should -Be $odd
        (Get-Checkpoint -LiteralPath $odd).Tensors.Count | Should -BeGreaterThan 0
        (Get-Checkpoint -LP $odd -Tensor -Name 'lm_head*', 'model.norm*').Name | Should -Contain 'model.norm.weight'
        (Test-Checkpoint -LiteralPath $odd).IsValid | Should -BeTrue
        @(Get-ModelMemory -LiteralPath $odd -DType float32).Count | Should -Be 1
        (Get-Item -LiteralPath $odd | Get-Checkpoint).Path | Should -Be $odd
    }

    It 'completes tensor names of a checkpoint given relative to the current location, typed text taken literally' {
        Push-Location $stories
        try {
            $line = 'New-DeviceMap ./model.safetensors -TiedParameters model.layers.0.in'
            $completion = TabExpansion2 -inputScript $line -cursorColumn $line.Length
            $completion.CompletionMatches.CompletionText | Should -Be @('model.layers.0.input_layernorm.weight')
            $line = 'Get-Checkpoint ./does-not-exist -Tensor -Name x'
            (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.Count | Should -Be 0
        }
        finally { Pop-Location }
        $brackets = Join-Path $work 'brackets'
        New-TestSafetensors -Path (Join-Path $brackets 'model.safetensors') -Tensors @(
            @{ Name = 'w[0]'; DType = 'U8'; Shape = , 1 }, @{ Name = 'w1'; DType = 'U8'; Shape = , 1 }) | Out-Null
        Push-Location $brackets
        try {
            $line = 'Get-Checkpoint . -Tensor -Name w['
            (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Be @("'w[0]'")
        }
        finally { Pop-Location }
    }

    It 'rejects a malformed budget with a typed error' {
        { New-DeviceMap $stories -MaxMemory @{ cpu = 'lots' } -ErrorAction Stop } | Should -Throw -ErrorId 'BigModel.InvalidSize,*'
        { New-DeviceMap $stories -MaxMemory @{ tpu = '1GB' } -ErrorAction Stop } | Should -Throw -ErrorId 'BigModel.InvalidDevice,*'
    }
}

Describe 'The NewDeviceMap MSBuild task' -Skip:(-not $hasStories) {
    BeforeAll {
        $root = Get-RepositoryRoot
        $project = Join-Path $root 'tests/MSBuild/DeviceMap.proj'
        $buildDir = Join-Path $root 'artifacts/msbuild/BigModel.Build/'
        function Invoke-MapBuild([string[]] $Properties) {
            $arguments = @('msbuild', $project, '-nologo', '-v:n', "-p:BigModelBuildDir=$buildDir") + ($Properties | ForEach-Object { "-p:$_" })
            $output = & dotnet @arguments 2>&1 | Out-String
            [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = $output }
        }
    }

    It 'writes the map, then skips when nothing changed, and replans when the budget changes' {
        $file = Join-Path $work 'msbuild-map.json'
        $first = Invoke-MapBuild @("MapFile=$file")
        $first.ExitCode | Should -Be 0 -Because $first.Output
        $file | Should -Exist
        (Get-Content $file -Raw | ConvertFrom-Json -AsHashtable)['model.layers.4'] | Should -Be 'disk'
        $second = Invoke-MapBuild @("MapFile=$file")
        $second.Output | Should -Match 'is up to date'
        $third = Invoke-MapBuild @("MapFile=$file", 'MaxMemory=cpu=2MB')
        $third.Output | Should -Match 'Device map written'
        (Get-Content $file -Raw | ConvertFrom-Json -AsHashtable)[''] | Should -Be 'cpu'
    }

    It 'still reports the devices of a map it skips' {
        $file = Join-Path $work 'skip-map.json'
        $first = Invoke-MapBuild @("MapFile=$file")
        $first.ExitCode | Should -Be 0 -Because $first.Output
        $second = Invoke-MapBuild @("MapFile=$file")
        $second.Output | Should -Match 'is up to date'
        $second.Output | Should -Match 'Device disk: used=[1-9]\d* offload=true'
        $second.Output | Should -Match 'Device cpu: used=[1-9]\d*'
    }

    It 'names default map files after the model folder and a hash of the path, and plans from a config.json item' {
        $out = Join-Path $work 'default-names/'
        $configOnly = Join-Path $work 'stories-config'
        New-Item -ItemType Directory -Force $configOnly | Out-Null
        Copy-Item (Join-Path $stories 'config.json') $configOnly
        $a = Invoke-MapBuild @("BigModelOutputPath=$out")
        $a.ExitCode | Should -Be 0 -Because $a.Output
        $b = Invoke-MapBuild @("BigModelOutputPath=$out", "Checkpoint=$(Join-Path $configOnly 'config.json')")
        $b.ExitCode | Should -Be 0 -Because $b.Output
        $files = @(Get-ChildItem $out -Filter '*.device_map.json' | Sort-Object Name)
        $files.Count | Should -Be 2
        $files.Name | Should -Match '^(stories260K|stories-config)-[0-9a-f]{8}\.device_map\.json$'
        $fromConfig = Get-Content ($files | Where-Object Name -like 'stories-config-*').FullName -Raw | ConvertFrom-Json -AsHashtable
        $fromConfig['model.layers.4'] | Should -Be 'disk'
    }

    It 'gives each planning warning its own code' {
        $r = Invoke-MapBuild @("MapFile=$(Join-Path $work 'codes.json')")
        $r.Output | Should -Match 'warning BM1601: .*does not fit without disk'
        $r.Output | Should -Not -Match 'warning BM1603: The model does not fit'
    }

    It 'reports a file it cannot write as a BigModel error, not a task crash' {
        $file = Join-Path $work 'blocked.json'
        New-Item -ItemType Directory -Force (Join-Path $work '.blocked.json.bigmodel-stamp') | Out-Null
        $r = Invoke-MapBuild @("MapFile=$file")
        $r.ExitCode | Should -Not -Be 0
        $r.Output | Should -Match 'error BM1003'
        $r.Output | Should -Not -Match 'MSB4018'
    }

    It 'fails the build with BM1601 when FailIfOffloaded and the model spills to disk' {
        $r = Invoke-MapBuild @("MapFile=$(Join-Path $work 'fail.json')", 'FailIfOffloaded=true')
        $r.ExitCode | Should -Not -Be 0
        $r.Output | Should -Match 'error BM1601'
    }
}
