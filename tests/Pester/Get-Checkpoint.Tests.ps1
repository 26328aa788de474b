BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $hasStories = Test-Stories260K
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-BigModelUnderTest
    $stories = Get-Stories260KPath
}

Describe 'Get-Checkpoint' {
    BeforeEach {
        $folder = Join-Path ([IO.Path]::GetTempPath()) ("bm-pester-" + [guid]::NewGuid().ToString('N'))
        New-TestSafetensors -Path (Join-Path $folder 'model.safetensors') -Tensors @(
            @{ Name = 'model.layers.10.mlp.up_proj.weight'; DType = 'F32'; Shape = 4, 2 },
            @{ Name = 'model.layers.2.mlp.up_proj.weight'; DType = 'F32'; Shape = 4, 2 },
            @{ Name = 'model.embed_tokens.weight'; DType = 'F16'; Shape = 8, 2 }
        ) | Out-Null
    }
    AfterEach { Remove-Item -Recurse -Force $folder -ErrorAction SilentlyContinue }

    It 'describes a folder without loading weights' {
        $c = Get-Checkpoint -Path $folder
        $c.Format | Should -Be 'Safetensors'
        $c.Tensors.Count | Should -Be 3
        $c.ParameterCount | Should -Be 32
        $c.ByteLength | Should -Be (4 * 2 * 4 * 2 + 8 * 2 * 2)
    }

    It 'resolves paths relative to the PowerShell location' {
        Push-Location $folder
        try { (Get-Checkpoint -Path .).Path | Should -Be $folder } finally { Pop-Location }
    }

    It 'lists tensors in natural order, filtered by wildcard' {
        $names = (Get-Checkpoint $folder -Tensor -Name '*up_proj*').Name
        $names | Should -Be @('model.layers.2.mlp.up_proj.weight', 'model.layers.10.mlp.up_proj.weight')
    }

    It 'takes paths from Get-ChildItem through the pipeline' {
        $c = Get-ChildItem $folder -Filter *.safetensors | Get-Checkpoint
        $c.Tensors.Count | Should -Be 3
    }

    It 'reports a missing path with a stable error id' {
        { Get-Checkpoint -Path (Join-Path $folder 'nope') -ErrorAction Stop } |
            Should -Throw -ErrorId 'BigModel.PathNotFound,BigModel.Cmdlets.GetCheckpointCommand'
    }

    It 'reports a corrupt file with its error id and the file name' {
        $bad = Join-Path $folder 'bad.safetensors'
        [IO.File]::WriteAllBytes($bad, [byte[]](200, 0, 0, 0, 0, 0, 0, 0, 123))
        $err = $null
        Get-Checkpoint -Path $bad -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -BeLike 'BigModel.SafetensorsHeaderTruncated,*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidData'
        $err[0].Exception.Message | Should -BeLike "*bad.safetensors*"
    }

    It 'reads stories260K' -Skip:(-not $hasStories) {
        $c = Get-Checkpoint $stories
        $c.Config.Architecture | Should -Be 'LlamaForCausalLM'
        $c.Tensors.Count | Should -Be 47
        $c.Tensors[0].Name | Should -Be 'model.embed_tokens.weight'
    }
}
