BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-BigModelUnderTest
    $manifestPath = Join-Path (Split-Path (Get-Module BigModel).Path) 'BigModel.psd1'
}

Describe 'The BigModel module' {
    It 'has a manifest that Test-ModuleManifest accepts' {
        $manifest = Test-ModuleManifest -Path $manifestPath -ErrorAction Stop
        $manifest.Name | Should -Be 'BigModel'
        $manifest.CompatiblePSEditions | Should -Contain 'Core'
    }

    It 'exports exactly the cmdlets the manifest lists' {
        $exported = (Get-Module BigModel).ExportedCmdlets.Keys | Sort-Object
        $listed = (Import-PowerShellDataFile $manifestPath).CmdletsToExport | Sort-Object
        $exported | Should -Be $listed
        $exported | Should -Contain 'Get-Checkpoint'
    }

    It 'ships the native torch runtime beside the module' {
        $folder = Split-Path (Get-Module BigModel).Path
        $native = if ($IsWindows) { 'LibTorchSharp.dll' } elseif ($IsMacOS) { 'libLibTorchSharp.dylib' } else { 'libLibTorchSharp.so' }
        Join-Path $folder $native | Should -Exist
    }
}

Describe 'Help' {
    BeforeDiscovery {
        Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
        Import-BigModelUnderTest
        $commands = (Get-Command -Module BigModel -CommandType Cmdlet).Name
    }

    It '<_> has a synopsis, a description, documented parameters and at least two examples' -ForEach $commands {
        $help = Get-Help $_ -Full
        $help.Synopsis | Should -Not -BeNullOrEmpty
        $help.Synopsis | Should -Not -BeLike "$_*"   # not the auto-generated syntax line
        $help.description.Text | Should -Not -BeNullOrEmpty
        @($help.examples.example).Count | Should -BeGreaterOrEqual 2
        foreach ($parameter in $help.parameters.parameter) {
            $parameter.description.Text | Should -Not -BeNullOrEmpty -Because "-$($parameter.name) needs a description"
        }
    }

    It 'ships the about_BigModel topic' {
        (Get-Help about_BigModel | Out-String) | Should -Match 'SHORT DESCRIPTION'
    }
}
