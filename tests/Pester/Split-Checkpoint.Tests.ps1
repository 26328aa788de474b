BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $hasStories = Test-Stories260K
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-BigModelUnderTest
    $stories = Get-Stories260KPath
    $torchFixture = Join-Path (Get-RepositoryRoot) 'tests/Unit/fixtures/pytorch/valid/hf_default.bin'
    function Get-TensorBytes($checkpoint, [string] $name) {
        # The comma keeps PowerShell from unrolling (or dropping, when empty) the byte array.
        , [BigModel.Checkpoints.TensorData]::ReadAll($checkpoint[$name])
    }
}

Describe 'Split-Checkpoint' -Skip:(-not $hasStories) {
    BeforeEach {
        $work = Join-Path ([IO.Path]::GetTempPath()) ("bm-pester-split-" + [guid]::NewGuid().ToString('N'))
        New-Item -ItemType Directory $work | Out-Null
    }
    AfterEach { Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue }

    It 'reshards into Hugging Face shards whose tensors equal the source' {
        $out = Join-Path $work 'sharded'
        $new = Split-Checkpoint $stories -Destination $out -MaxShardSize 300KB -PassThru
        $new.Format | Should -Be 'ShardedSafetensors'
        (Get-ChildItem $out -Filter 'model-*-of-*.safetensors').Count | Should -BeGreaterThan 2
        Join-Path $out 'model.safetensors.index.json' | Should -Exist
        Join-Path $out 'config.json' | Should -Exist
        $source = Get-Checkpoint $stories
        foreach ($t in $source.Tensors) {
            [Convert]::ToBase64String((Get-TensorBytes $new $t.Name)) | Should -Be ([Convert]::ToBase64String((Get-TensorBytes $source $t.Name)))
        }
        (Get-Content (Join-Path $out 'model.safetensors.index.json') -Raw | ConvertFrom-Json).metadata.total_size | Should -Be $source.ByteLength
    }

    It 'writes one model.safetensors and no index when everything fits one shard' {
        $out = Join-Path $work 'single'
        Get-Checkpoint $stories | Split-Checkpoint -Destination $out -MaxShardSize 5GB
        Join-Path $out 'model.safetensors' | Should -Exist
        Join-Path $out 'model.safetensors.index.json' | Should -Not -Exist
    }

    It 'converts to bfloat16 and records it in config.json' {
        $out = Join-Path $work 'bf16'
        $new = Split-Checkpoint $stories -Destination $out -MaxShardSize 1GB -DType bfloat16 -PassThru
        $new.DTypes | Should -Be @('BF16')
        $new.ByteLength | Should -Be ((Get-Checkpoint $stories).ByteLength / 2)
        (Get-Content (Join-Path $out 'config.json') -Raw | ConvertFrom-Json).torch_dtype | Should -Be 'bfloat16'
    }

    It 'shows the plan with -WhatIf and writes nothing' {
        $out = Join-Path $work 'whatif'
        $text = Split-Checkpoint $stories -Destination $out -MaxShardSize 300KB -WhatIf 6>&1 | Out-String
        $out | Should -Not -Exist
        Get-ChildItem $work | Should -BeNullOrEmpty
    }

    It 'refuses an existing destination without -Force and replaces it with -Force' {
        $out = Join-Path $work 'existing'
        New-Item -ItemType Directory $out | Out-Null
        Set-Content (Join-Path $out 'keep.txt') 'mine'
        { Split-Checkpoint $stories -Destination $out -MaxShardSize 1GB -ErrorAction Stop } | Should -Throw -ErrorId 'BigModel.DestinationExists,*'
        Join-Path $out 'keep.txt' | Should -Exist
        Split-Checkpoint $stories -Destination $out -MaxShardSize 1GB -Force
        Join-Path $out 'keep.txt' | Should -Not -Exist
        Join-Path $out 'model.safetensors' | Should -Exist
    }

    It 'refuses a destination inside the source' {
        $copy = Join-Path $work 'copy'
        Copy-Item -Recurse $stories $copy
        { Split-Checkpoint $copy -Destination (Join-Path $copy 'out') -MaxShardSize 1GB -ErrorAction Stop } |
            Should -Throw -ErrorId 'BigModel.DestinationInsideSource,*'
    }

    It 'rejects a size it cannot read' {
        { Split-Checkpoint $stories -Destination (Join-Path $work 'x') -MaxShardSize 'big' -ErrorAction Stop } | Should -Throw -ErrorId 'BigModel.InvalidSize,*'
    }

    It 'converts a PyTorch pytorch_model.bin to safetensors' {
        $out = Join-Path $work 'from-bin'
        $new = Split-Checkpoint $torchFixture -Destination $out -MaxShardSize 1GB -PassThru
        $new.Format | Should -Be 'Safetensors'
        $source = Get-Checkpoint $torchFixture
        foreach ($name in $new.Tensors.Name) {
            [Convert]::ToBase64String((Get-TensorBytes $new $name)) | Should -Be ([Convert]::ToBase64String((Get-TensorBytes $source $name)))
        }
    }
}

Describe 'The SplitCheckpoint MSBuild task' -Skip:(-not $hasStories) {
    BeforeAll {
        $root = Get-RepositoryRoot
        $project = Join-Path $root 'tests/MSBuild/Split.proj'
        $buildDir = Join-Path $root 'artifacts/msbuild/BigModel.Build/'
        $work = Join-Path ([IO.Path]::GetTempPath()) ("bm-pester-msbuild-split-" + [guid]::NewGuid().ToString('N'))
    }
    AfterAll { Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue }

    It 'splits, lists the produced files, then skips while nothing changed' {
        $out = Join-Path $work 'out'
        $first = & dotnet msbuild $project -nologo -v:n "-p:BigModelBuildDir=$buildDir" "-p:Destination=$out" 2>&1 | Out-String
        $LASTEXITCODE | Should -Be 0 -Because $first
        $first | Should -Match 'Produced .*model-00001-of-'
        Join-Path $out 'model.safetensors.index.json' | Should -Exist
        $second = & dotnet msbuild $project -nologo -v:n "-p:BigModelBuildDir=$buildDir" "-p:Destination=$out" 2>&1 | Out-String
        $second | Should -Match 'is up to date'
        $third = & dotnet msbuild $project -nologo -v:n "-p:BigModelBuildDir=$buildDir" "-p:Destination=$out" -p:MaxShardSize=2MB 2>&1 | Out-String
        $third | Should -Match '1 shard'
        Join-Path $out 'model.safetensors' | Should -Exist
    }
}
