BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $hasStories = Test-Stories260K
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-BigModelUnderTest
    $bertBaseCased = @'
{"architectures":["BertModel"],"model_type":"bert","vocab_size":28996,"hidden_size":768,"num_hidden_layers":12,
 "num_attention_heads":12,"intermediate_size":3072,"max_position_embeddings":512,"type_vocab_size":2,
 "hidden_act":"gelu","layer_norm_eps":1e-12,"torch_dtype":"float32"}
'@
    $stories = Get-Stories260KPath
}

Describe 'Get-ModelMemory' {
    BeforeAll {
        $folder = Join-Path ([IO.Path]::GetTempPath()) ("bm-pester-bert-" + [guid]::NewGuid().ToString('N'))
        New-SparseCheckpoint -ConfigJson $bertBaseCased -Folder $folder | Out-Null
    }
    AfterAll { Remove-Item -Recurse -Force $folder -ErrorAction SilentlyContinue }

    It 'sizes a bert-base-cased-shaped checkpoint as accelerate estimate-memory does' {
        $row = Get-ModelMemory -Path $folder -DType float32
        $row.ParameterCount | Should -Be 108310272
        $row.TotalBytes | Should -Be 433241088
        $row.LargestLayerBytes | Should -Be 90660864
        $row.LargestLayer | Should -Be 'embeddings'
        $row.TrainingAdamBytes | Should -Be (4 * 433241088)
    }

    It 'gives the same figures from config.json alone, before any download' {
        $fromConfig = Get-ModelMemory -Path (Join-Path $folder 'config.json')
        $fromCheckpoint = Get-Checkpoint $folder | Get-ModelMemory
        ($fromConfig | ForEach-Object TotalBytes) | Should -Be ($fromCheckpoint | ForEach-Object TotalBytes)
        ($fromConfig | ForEach-Object DType | ForEach-Object Name) | Should -Be @('float32', 'float16', 'int8', 'int4')
        ($fromConfig | Where-Object { $_.DType.Name -eq 'int4' }).TrainingAdamBytes | Should -BeNullOrEmpty
    }

    It 'adds the KV cache of a decoder to the inference figure' -Skip:(-not $hasStories) {
        $row = Get-ModelMemory $stories -DType float16 -ContextLength 256 -BatchSize 2
        # 2 (k, v) x 5 layers x 2 sequences x 256 tokens x 4 kv heads x 8 dims x 2 bytes
        $row.KvCacheBytes | Should -Be (2 * 5 * 2 * 256 * 4 * 8 * 2)
        $row.InferenceBytes | Should -Be ($row.TotalBytes + $row.KvCacheBytes + $row.ActivationBytes)
    }

    It 'writes the row and a budget error for each precision over -MaxBytes' {
        $rows = Get-ModelMemory -Path $folder -DType float32, int4 -MaxBytes 300MB -ErrorAction SilentlyContinue -ErrorVariable over
        $rows.Count | Should -Be 2
        $over.Count | Should -Be 1
        $over[0].FullyQualifiedErrorId | Should -BeLike 'BigModel.MemoryBudgetExceeded,*'
        $over[0].Exception.Message | Should -Match 'running it in float32 needs .* over the budget of 300MB'
    }

    It 'rejects an unknown precision before doing any work' {
        { Get-ModelMemory -Path $folder -DType float7 -ErrorAction Stop } | Should -Throw -ErrorId 'ParameterArgumentValidationError,*'
    }
}
