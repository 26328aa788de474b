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

    It 'fails the build with BM1601 when FailIfOffloaded and the model spills to disk' {
        $r = Invoke-MapBuild @("MapFile=$(Join-Path $work 'fail.json')", 'FailIfOffloaded=true')
        $r.ExitCode | Should -Not -Be 0
        $r.Output | Should -Match 'error BM1601'
    }
}
