BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $root = Get-RepositoryRoot
    $hasPackages = Test-Path (Join-Path $root 'artifacts/packages/BigModel.Build.*.nupkg')
    $hasStories = Test-Stories260K
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $root = Get-RepositoryRoot
    $packages = Join-Path $root 'artifacts/packages'
    $stories = Get-Stories260KPath
    $version = (Import-PowerShellDataFile (Join-Path $root 'BigModel.psd1')).ModuleVersion
    $rid = [System.Runtime.InteropServices.RuntimeInformation]::RuntimeIdentifier
    $work = Join-Path ([IO.Path]::GetTempPath()) ("bm-pester-pack-" + [guid]::NewGuid().ToString('N'))
    New-Item -ItemType Directory $work | Out-Null
    $repository = 'BigModelTest' + [guid]::NewGuid().ToString('N').Substring(0, 8)
    Register-PSResourceRepository -Name $repository -Uri $packages -Trusted

    # Runs a script in a fresh pwsh whose module path holds only $ModuleRoot, with $HOME set aside so nothing of the
    # user's profile is read or changed; returns its output.
    function Invoke-Isolated([string] $ModuleRoot, [string] $Script) {
        $isolatedHome = Join-Path $work ('home-' + [guid]::NewGuid().ToString('N'))
        New-Item -ItemType Directory $isolatedHome | Out-Null
        $scriptFile = Join-Path $work ([guid]::NewGuid().ToString('N') + '.ps1')
        Set-Content -Path $scriptFile -Value $Script
        # The same PowerShell as this one, started through its own entry assembly (not through the local tool
        # manifest, which a different HOME would hide).
        $pwshDll = Get-ChildItem -Path $PSHOME, (Split-Path $PSHOME) -Filter pwsh.dll -ErrorAction SilentlyContinue | Select-Object -First 1
        $pwsh, $arguments = if ($pwshDll) { 'dotnet', @($pwshDll.FullName, '-NoProfile', '-File', $scriptFile) } else { (Get-Process -Id $PID).Path, @('-NoProfile', '-File', $scriptFile) }
        $saved = @{ HOME = $env:HOME; PSModulePath = $env:PSModulePath; BIGMODEL_RUNTIME = $env:BIGMODEL_RUNTIME }
        try {
            $env:HOME = $isolatedHome
            $env:PSModulePath = $ModuleRoot
            $env:BIGMODEL_RUNTIME = $null
            $output = & $pwsh @arguments 2>&1 | Out-String
        }
        finally {
            foreach ($k in $saved.Keys) { Set-Item "env:$k" $saved[$k] }
        }
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = $output }
    }
}

AfterAll {
    Unregister-PSResourceRepository -Name $repository -ErrorAction SilentlyContinue
    Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue
}

Describe 'The packages' -Skip:(-not $hasPackages) {
    It 'keeps the native runtime out of the module package' {
        $module = Get-Item (Join-Path $packages "BigModel.$version.nupkg")
        $runtime = Get-Item (Join-Path $packages "BigModel.Runtime.$rid.$version.nupkg")
        $module.Length | Should -BeLessThan 20MB
        $runtime.Length | Should -BeGreaterThan 50MB
        Add-Type -AssemblyName System.IO.Compression.FileSystem
        $zip = [IO.Compression.ZipFile]::OpenRead($module.FullName)
        try { $zip.Entries.Name | Where-Object { $_ -like '*torch_cpu*' } | Should -BeNullOrEmpty } finally { $zip.Dispose() }
    }

    It 'saves from a local repository with Save-PSResource and passes Test-ModuleManifest' {
        $saved = Join-Path $work 'saved'
        New-Item -ItemType Directory $saved | Out-Null
        Save-PSResource -Name 'BigModel' -Repository $repository -Path $saved -TrustRepository -ErrorAction Stop
        $manifest = Get-ChildItem -Recurse -Path (Join-Path $saved 'BigModel') -Filter BigModel.psd1 | Select-Object -First 1
        (Test-ModuleManifest -Path $manifest.FullName -ErrorAction Stop).Version.ToString() | Should -Be $version
    }

    It 'installs with Install-PSResource and runs a model with the runtime package' -Skip:(-not $hasStories) {
        $modules = Join-Path $work 'modules'
        New-Item -ItemType Directory $modules | Out-Null
        Save-PSResource -Name 'BigModel', "BigModel.Runtime.$rid" -Repository $repository -Path $modules -TrustRepository -ErrorAction Stop
        $r = Invoke-Isolated $modules @"
Import-Module BigModel -ErrorAction Stop
(Get-Checkpoint '$stories').Tensors.Count
(Invoke-BigModel '$stories' -InputIds 1 -MaxNewTokens 6 -ErrorAction Stop).GeneratedIds -join ','
"@
        $r.Output | Should -Match '(?m)^47\s*$'
        $r.Output | Should -Match '(?m)^\d+(,\d+){5}\s*$'
        $r.ExitCode | Should -Be 0 -Because $r.Output
    }

    It 'tells what to install when the runtime package is missing' -Skip:(-not $hasStories) {
        $modules = Join-Path $work 'module-only'
        New-Item -ItemType Directory $modules | Out-Null
        Save-PSResource -Name 'BigModel' -Repository $repository -Path $modules -TrustRepository -ErrorAction Stop
        $r = Invoke-Isolated $modules @"
Import-Module BigModel -ErrorAction Stop
try { Invoke-BigModel '$stories' -InputIds 1 -MaxNewTokens 2 -ErrorAction Stop } catch { `$_.FullyQualifiedErrorId; `$_.Exception.Message }
"@
        $r.Output | Should -Match 'BigModel.TorchUnavailable'
        $r.Output | Should -Match "Install-PSResource BigModel.Runtime.$rid"
    }

    It 'installs into the user scope with Install-PSResource' {
        $r = Invoke-Isolated (Join-Path $work 'none') @"
Register-PSResourceRepository -Name local -Uri '$packages' -Trusted
Install-PSResource -Name BigModel -Repository local -Scope CurrentUser -TrustRepository -ErrorAction Stop
(Get-InstalledPSResource -Name BigModel).Version.ToString()
"@
        $r.Output | Should -Match ([regex]::Escape($version))
    }
}

Describe 'A project consuming the BigModel.Build package' -Skip:(-not $hasPackages) {
    It 'restores the package from the local feed and checks its models during the build' {
        $packagesFolder = Join-Path $work 'nuget'
        $out = Join-Path $work 'sample-out'
        # A private packages folder: the global one would keep serving an older build of the same version.
        $output = & dotnet build (Join-Path $root 'samples/ModelCheck/ModelCheck.csproj') "-p:BigModelFeed=$packages" --packages $packagesFolder -o $out 2>&1 | Out-String
        $LASTEXITCODE | Should -Be 0 -Because $output
        $output | Should -Match 'llama-7b.json: float16 needs \d+ bytes to run'
        Join-Path $packagesFolder 'bigmodel.build' | Should -Exist
    }
}
