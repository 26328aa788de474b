BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $hasStories = Test-Stories260K
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-BigModelUnderTest
    $stories = Get-Stories260KPath
}

Describe 'Test-Checkpoint' {
    BeforeEach {
        $folder = Join-Path ([IO.Path]::GetTempPath()) ("bm-pester-" + [guid]::NewGuid().ToString('N'))
        New-TestSafetensors -Path (Join-Path $folder 'a.safetensors') -Tensors @(@{ Name = 'w'; DType = 'I32'; Shape = , 4 }) | Out-Null
        New-TestSafetensors -Path (Join-Path $folder 'b.safetensors') -Tensors @(@{ Name = 'w'; DType = 'U8'; Shape = , 3 }) | Out-Null
    }
    AfterEach { Remove-Item -Recurse -Force $folder -ErrorAction SilentlyContinue }

    It 'validates every file Get-ChildItem sends' {
        $results = Get-ChildItem $folder -Filter *.safetensors | Test-Checkpoint
        $results.Count | Should -Be 2
        $results.IsValid | Should -Not -Contain $false
    }

    It 'returns a result and an error for a broken file, so -ErrorAction Stop stops' {
        $bad = Join-Path $folder 'c.safetensors'
        $bytes = [IO.File]::ReadAllBytes((Join-Path $folder 'a.safetensors'))
        [IO.File]::WriteAllBytes($bad, $bytes[0..($bytes.Length - 2)])
        $result = Test-Checkpoint $bad -ErrorAction SilentlyContinue -ErrorVariable err
        $result.IsValid | Should -BeFalse
        $result.Problems[0].Code | Should -Be 'SafetensorsDataLengthMismatch'
        $err[0].FullyQualifiedErrorId | Should -BeLike 'BigModel.SafetensorsDataLengthMismatch,*'
        { Test-Checkpoint $bad -ErrorAction Stop } | Should -Throw -ErrorId 'BigModel.SafetensorsDataLengthMismatch,BigModel.Cmdlets.TestCheckpointCommand'
    }

    It 'hashes files with -Hash' {
        $file = Join-Path $folder 'a.safetensors'
        $r = Test-Checkpoint $file -Hash
        $r.Hashes[0].Sha256 | Should -Be (Get-FileHash $file -Algorithm SHA256).Hash.ToLowerInvariant()
    }

    It 'stops promptly when the pipeline is stopped in the middle of a file' {
        # 64 GiB of zeros as a sparse file: hashing it would take minutes.
        $huge = Join-Path $folder 'huge.safetensors'
        $specs = [System.Collections.Generic.List[BigModel.Checkpoints.TensorSpec]]::new()
        $specs.Add([BigModel.Checkpoints.TensorSpec]::new('big', [BigModel.Checkpoints.DType]::U8, [long[]]@(64GB)))
        $layout = [BigModel.Checkpoints.SafetensorsLayout]::Create($specs, $null)
        $stream = [IO.File]::Create($huge)
        try {
            $stream.Write([BitConverter]::GetBytes([uint64]$layout.Header.Length), 0, 8)
            $stream.Write($layout.Header, 0, $layout.Header.Length)
            $stream.SetLength($layout.FileLength)
        }
        finally { $stream.Dispose() }

        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$env:BIGMODEL_MODULE'; Test-Checkpoint '$huge' -Hash")
            $async = $ps.BeginInvoke()
            Start-Sleep -Milliseconds 1500
            $async.IsCompleted | Should -BeFalse -Because 'hashing 64 GiB takes longer than that'
            $clock = [Diagnostics.Stopwatch]::StartNew()
            $ps.Stop()
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 5
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
        }
        finally { $ps.Dispose() }
    }

    It 'reads every value of stories260K with -Deep' -Skip:(-not $hasStories) {
        $r = Get-Checkpoint $stories | Test-Checkpoint -Deep
        $r.IsValid | Should -BeTrue
        $r.BytesRead | Should -Be 1040128
        $r.NonFiniteTensors.Count | Should -Be 0
    }
}
