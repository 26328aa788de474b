using System.Text;
using System.Text.RegularExpressions;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.IO;
using BigModel.Sharding;
using BigModel.Tests.Support;

namespace BigModel.Tests.Sharding;

public sealed class CheckpointSplitterTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private const string Config = """
        {
          "architectures": ["LlamaForCausalLM"],
          "model_type": "llama",
          "hidden_size": 32,
          "num_hidden_layers": 4,
          "num_attention_heads": 4,
          "vocab_size": 64,
          "torch_dtype": "float32"
        }
        """;

    /// <summary>A Llama-like model folder: one safetensors file, config, tokenizer and a few other files.</summary>
    private (string Folder, Dictionary<string, byte[]> Data) SingleFileModel(DType dtype = DType.F32, int layers = 4)
    {
        var folder = _dir.Combine("source");
        Directory.CreateDirectory(folder);
        var specs = CheckpointFiles.LlamaLike(layers, 32, dtype);
        specs.Add(new TensorSpec("model.layers.0.self_attn.rotary_emb.inv_freq_steps", DType.I64, [16]));
        var data = CheckpointFiles.WriteSafetensors(Path.Combine(folder, "model.safetensors"), specs, seed: 3);
        File.WriteAllText(Path.Combine(folder, "config.json"), Config);
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"), "{\"version\": \"1.0\"}");
        File.WriteAllText(Path.Combine(folder, "generation_config.json"), "{}");
        return (folder, data);
    }

    private static Dictionary<string, byte[]> ReadAll(Checkpoint checkpoint) =>
        checkpoint.Tensors.ToDictionary(t => t.Name, TensorData.ReadAll, StringComparer.Ordinal);

    private static void AssertOnlyDestination(string parent, params string[] expected)
    {
        var names = Directory.EnumerateFileSystemEntries(parent).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(expected.Order(StringComparer.Ordinal).ToArray(), names);
    }

    [Fact]
    public void Splits_a_single_file_into_huggingface_shards_with_identical_bytes()
    {
        var (folder, data) = SingleFileModel();
        var source = Checkpoint.Open(folder);
        var destination = _dir.Combine("out");
        var result = CheckpointSplitter.Split(source, destination, new SplitOptions { MaxShardSize = 20_000 });

        // The plan is huggingface_hub's greedy split over the forward order.
        var expected = ShardPlanner.Split(source.Tensors.Select(t => new ShardCandidate(t.Name, t.ByteLength)), 20_000);
        Assert.True(expected.IsSharded);
        Assert.Equal(expected.Shards.Select(s => s.FileName), result.Plan.Shards.Select(s => s.FileName));
        Assert.Equal(expected.Shards.Select(s => s.Tensors), result.Plan.Shards.Select(s => s.Tensors.Select(t => t.Name).ToList()));
        Assert.Matches(new Regex(@"^model-00001-of-\d{5}\.safetensors$"), Path.GetFileName(result.ShardFiles[0]));

        // Every tensor's bytes survive, and the index is transformers' file.
        var written = Checkpoint.Open(destination);
        Assert.Equal(CheckpointFormat.ShardedSafetensors, written.Format);
        var back = ReadAll(written);
        Assert.Equal(data.Keys.Order(), back.Keys.Order());
        foreach (var (name, bytes) in data) Assert.Equal(bytes, back[name]);
        var index = File.ReadAllText(Path.Combine(destination, "model.safetensors.index.json"));
        Assert.Equal(ShardIndexJson.Serialize(data.Values.Sum(v => (long)v.Length), expected.TensorToFile), index);
        Assert.Equal(result.CheckpointPath, Path.Combine(destination, "model.safetensors.index.json"));
        foreach (var file in result.ShardFiles)
        {
            var header = SafetensorsHeader.Read(file);
            Assert.Equal("pt", header.Metadata!["format"]);
            Assert.Equal(0, header.DataStart % 8);
        }
        Assert.Equal(["config.json", "generation_config.json", "tokenizer.json"], result.CopiedFiles.Select(Path.GetFileName).Order());
        Assert.Equal(Config, File.ReadAllText(Path.Combine(destination, "config.json")));
        AssertOnlyDestination(_dir.Path, "source", "out");
    }

    [Fact]
    public void Consecutive_layers_share_shards()
    {
        var (folder, _) = SingleFileModel(layers: 6);
        var result = CheckpointSplitter.Split(Checkpoint.Open(folder), _dir.Combine("out"), new SplitOptions { MaxShardSize = 30_000 });
        int last = -1;
        foreach (var shard in result.Plan.Shards)
        {
            foreach (var layer in shard.Tensors.Select(t => Regex.Match(t.Name, @"layers\.(\d+)\.")).Where(m => m.Success).Select(m => int.Parse(m.Groups[1].Value)))
            {
                Assert.True(layer >= last, $"layer {layer} comes after layer {last} in {shard.FileName}");
                last = layer;
            }
        }
        Assert.Equal("model.embed_tokens.weight", result.Plan.Shards[0].Tensors[0].Name);
        Assert.Equal("lm_head.weight", result.Plan.Shards[^1].Tensors[^1].Name);
    }

    [Fact]
    public void Resplits_a_sharded_checkpoint_and_writes_one_file_without_an_index_when_it_fits()
    {
        var folder = _dir.Combine("sharded");
        var specs = CheckpointFiles.LlamaLike(3, 16);
        var data = CheckpointFiles.WriteSharded(folder, specs, shards: 3, seed: 11);
        var source = Checkpoint.Open(folder);
        Assert.Equal(CheckpointFormat.ShardedSafetensors, source.Format);

        var result = CheckpointSplitter.Split(source, _dir.Combine("one"), SplitOptions.Parse("5GB"));
        Assert.Equal([Path.Combine(_dir.Path, "one", "model.safetensors")], result.ShardFiles);
        Assert.Null(result.IndexFile);
        Assert.False(File.Exists(Path.Combine(_dir.Path, "one", "model.safetensors.index.json")));
        var back = ReadAll(Checkpoint.Open(_dir.Combine("one")));
        foreach (var (name, bytes) in data) Assert.Equal(bytes, back[name]);

        var smaller = CheckpointSplitter.Split(source, _dir.Combine("many"), new SplitOptions { MaxShardSize = 3000 });
        Assert.True(smaller.Plan.Shards.Count > 3);
        back = ReadAll(smaller.Checkpoint);
        foreach (var (name, bytes) in data) Assert.Equal(bytes, back[name]);
    }

    [Theory]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    public void Converts_float_tensors_exactly_and_records_the_dtype(DType target)
    {
        var (folder, data) = SingleFileModel();
        var source = Checkpoint.Open(folder);
        var result = CheckpointSplitter.Split(source, _dir.Combine("out"), new SplitOptions { MaxShardSize = 10_000, DType = target, ChunkBytes = 64 << 10 });
        var written = result.Checkpoint;
        foreach (var tensor in source.Tensors)
        {
            var back = written[tensor.Name];
            var bytes = TensorData.ReadAll(back);
            if (tensor.DType == DType.I64)
            {
                Assert.Equal(DType.I64, back.DType);
                Assert.Equal(data[tensor.Name], bytes);
                continue;
            }
            Assert.Equal(target, back.DType);
            var expected = new byte[tensor.ElementCount * 2];
            DTypeConverter.Convert(DType.F32, target, data[tensor.Name], expected);
            Assert.Equal(expected, bytes);
        }
        long total = source.Tensors.Sum(t => t.DType == DType.I64 ? t.ByteLength : t.ByteLength / 2);
        Assert.Equal(total, result.Plan.TotalSize);
        Assert.Equal(total, written.DeclaredTotalSize);
        var config = File.ReadAllText(Path.Combine(result.Destination, "config.json"));
        Assert.Equal(Config.Replace("\"float32\"", "\"" + target.TorchName() + "\""), config);
        Assert.Equal(target, written.Config!.TorchDType);
    }

    [Fact]
    public void Copies_other_files_but_not_weights_hidden_entries_or_outside_links()
    {
        var (folder, _) = SingleFileModel();
        File.WriteAllText(Path.Combine(folder, "pytorch_model.bin"), "stale weights");
        File.WriteAllText(Path.Combine(folder, "pytorch_model.bin.index.json"), "{}");
        File.WriteAllText(Path.Combine(folder, "spiece.model"), "sentencepiece");
        File.WriteAllText(Path.Combine(folder, ".gitattributes"), "*.bin filter=lfs");
        Directory.CreateDirectory(Path.Combine(folder, "1_Pooling"));
        File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), "{\"pooling_mode_mean_tokens\": true}");
        Directory.CreateDirectory(Path.Combine(folder, ".cache"));
        File.WriteAllText(Path.Combine(folder, ".cache", "x"), "cache");
        var secret = _dir.Combine("secret.txt");
        File.WriteAllText(secret, "not for copying");
        File.CreateSymbolicLink(Path.Combine(folder, "vocab.txt"), secret);
        File.WriteAllText(Path.Combine(folder, "merges-real.txt"), "a b");
        File.CreateSymbolicLink(Path.Combine(folder, "merges.txt"), "merges-real.txt");

        var plan = CheckpointSplitter.Plan(Checkpoint.Open(Path.Combine(folder, "model.safetensors")), _dir.Combine("out"), new SplitOptions());
        Assert.Equal(["1_Pooling/config.json", "config.json", "generation_config.json", "merges-real.txt", "merges.txt", "spiece.model", "tokenizer.json"],
            plan.CompanionFiles.Select(c => c.RelativePath));
        Assert.Contains(plan.Warnings, w => w.Contains("vocab.txt", StringComparison.Ordinal));
        var result = CheckpointSplitter.Execute(plan);
        Assert.Equal("a b", File.ReadAllText(Path.Combine(result.Destination, "merges.txt")));
        Assert.Equal("{\"pooling_mode_mean_tokens\": true}", File.ReadAllText(Path.Combine(result.Destination, "1_Pooling", "config.json")));
        Assert.False(File.Exists(Path.Combine(result.Destination, "vocab.txt")));
        Assert.False(File.Exists(Path.Combine(result.Destination, "pytorch_model.bin")));
        Assert.False(File.Exists(Path.Combine(result.Destination, ".gitattributes")));
    }

    [Fact]
    public void Reports_phases_in_order_and_bytes_up_to_the_total()
    {
        var (folder, _) = SingleFileModel();
        var reports = new List<SplitProgress>();
        var result = CheckpointSplitter.Split(Checkpoint.Open(folder), _dir.Combine("out"), new SplitOptions { MaxShardSize = 20_000 },
            new SyncProgress(reports.Add));
        var phases = reports.Select(r => r.Phase).Distinct().ToList();
        Assert.Equal([SplitPhase.Preparing, SplitPhase.WritingShards, SplitPhase.WritingIndex, SplitPhase.CopyingFiles,
            SplitPhase.Verifying, SplitPhase.Committing, SplitPhase.Completed], phases);
        Assert.Equal(reports.Select(r => r.Phase).Order(), reports.Select(r => r.Phase));
        Assert.Equal(result.Plan.Shards.Count, reports.Where(r => r.Phase == SplitPhase.WritingShards).Select(r => r.Shard).Distinct().Count());
        var last = reports[^1];
        Assert.Equal(result.TensorBytes, last.BytesDone);
        Assert.Equal(result.TensorBytes, last.BytesTotal);
        Assert.Equal(1.0, last.Fraction);
        Assert.True(reports.Select(r => r.BytesDone).SequenceEqual(reports.Select(r => r.BytesDone).Order()));
    }

    [Fact]
    public void Plan_lists_shards_and_tensors_and_writes_nothing()
    {
        var (folder, _) = SingleFileModel();
        var plan = CheckpointSplitter.Plan(Checkpoint.Open(folder), _dir.Combine("out"), SplitOptions.Parse("20KB", "bf16"));
        Assert.False(Directory.Exists(_dir.Combine("out")));
        Assert.Equal(20_000, plan.Options.MaxShardSize);
        Assert.Equal(DType.BF16, plan.Options.DType);
        Assert.True(plan.IsSharded);
        Assert.Equal("model.safetensors.index.json", plan.IndexFileName);
        Assert.All(plan.Shards, s => Assert.Equal(s.FileBytes, s.Layout.FileLength));
        Assert.Equal(plan.Shards.Sum(s => s.Tensors.Count), plan.TensorCount);
        var text = plan.Describe(listTensors: true);
        Assert.Contains("model-00001-of-", text, StringComparison.Ordinal);
        Assert.Contains("lm_head.weight  BF16 (from F32)", text, StringComparison.Ordinal);
        Assert.Contains("torch_dtype set to bfloat16", text, StringComparison.Ordinal);
        AssertOnlyDestination(_dir.Path, "source");
    }

    [Fact]
    public void Cancellation_midway_leaves_nothing_behind()
    {
        var (folder, _) = SingleFileModel(layers: 8);
        using var cancel = new CancellationTokenSource();
        var progress = new SyncProgress(p =>
        {
            if (p.Phase == SplitPhase.WritingShards && p.Shard == 2) cancel.Cancel();
        });
        Assert.ThrowsAny<OperationCanceledException>(() =>
            CheckpointSplitter.Split(Checkpoint.Open(folder), _dir.Combine("out"), new SplitOptions { MaxShardSize = 10_000, ChunkBytes = 64 << 10 }, progress, cancel.Token));
        AssertOnlyDestination(_dir.Path, "source");
    }

    [Theory]
    [InlineData(SplitPhase.WritingShards)]
    [InlineData(SplitPhase.WritingIndex)]
    [InlineData(SplitPhase.CopyingFiles)]
    [InlineData(SplitPhase.Verifying)]
    [InlineData(SplitPhase.Committing)]
    public void A_failure_at_any_step_leaves_no_destination_and_no_leftovers(SplitPhase failAt)
    {
        var (folder, _) = SingleFileModel();
        var progress = new SyncProgress(p =>
        {
            if (p.Phase == failAt && (failAt != SplitPhase.WritingShards || p.Shard == 2)) throw new InjectedFailure();
        });
        Assert.Throws<InjectedFailure>(() =>
            CheckpointSplitter.Split(Checkpoint.Open(folder), _dir.Combine("out"), new SplitOptions { MaxShardSize = 20_000 }, progress));
        AssertOnlyDestination(_dir.Path, "source");
    }

    [Fact]
    public void An_existing_destination_is_untouched_without_force_and_replaced_only_on_success_with_it()
    {
        var (folder, data) = SingleFileModel();
        var source = Checkpoint.Open(folder);
        var destination = _dir.Combine("out");
        Directory.CreateDirectory(destination);
        File.WriteAllText(Path.Combine(destination, "keep.txt"), "previous");

        var refused = Assert.Throws<BigModelException>(() => CheckpointSplitter.Plan(source, destination, new SplitOptions()));
        Assert.Equal(BigModelErrorCode.DestinationExists, refused.Code);
        Assert.Equal("previous", File.ReadAllText(Path.Combine(destination, "keep.txt")));

        // Planned while absent, then created before execution: still refused at write time.
        var late = _dir.Combine("late");
        var plan = CheckpointSplitter.Plan(source, late, new SplitOptions());
        Directory.CreateDirectory(late);
        File.WriteAllText(Path.Combine(late, "x"), "x");
        Assert.Equal(BigModelErrorCode.DestinationExists, Assert.Throws<BigModelException>(() => CheckpointSplitter.Execute(plan)).Code);
        Assert.Equal(["x"], Directory.GetFileSystemEntries(late).Select(Path.GetFileName));

        // With Force, a failure before the move keeps the old destination.
        var failing = new SyncProgress(p => { if (p.Phase == SplitPhase.Committing) throw new InjectedFailure(); });
        Assert.Throws<InjectedFailure>(() => CheckpointSplitter.Split(source, destination, new SplitOptions { Force = true }, failing));
        Assert.Equal(["keep.txt"], Directory.GetFileSystemEntries(destination).Select(Path.GetFileName));

        var result = CheckpointSplitter.Split(source, destination, new SplitOptions { Force = true });
        Assert.True(result.ReplacedExisting);
        Assert.False(File.Exists(Path.Combine(destination, "keep.txt")));
        Assert.Equal(data["lm_head.weight"], TensorData.ReadAll(Checkpoint.Open(destination)["lm_head.weight"]));
        AssertOnlyDestination(_dir.Path, "source", "out", "late");
    }

    [Fact]
    public void An_empty_destination_folder_is_filled_without_force()
    {
        var (folder, _) = SingleFileModel();
        var destination = _dir.Combine("empty");
        Directory.CreateDirectory(destination);
        var result = CheckpointSplitter.Split(Checkpoint.Open(folder), destination, new SplitOptions());
        Assert.False(result.ReplacedExisting);
        Assert.True(File.Exists(Path.Combine(destination, "model.safetensors")));
    }

    [Fact]
    public void Refuses_a_destination_inside_the_source_or_containing_it()
    {
        var (folder, _) = SingleFileModel();
        var source = Checkpoint.Open(folder);
        foreach (var inside in new[] { folder, Path.Combine(folder, "split"), folder + "/" })
        {
            var e = Assert.Throws<BigModelException>(() => CheckpointSplitter.Plan(source, inside, new SplitOptions { Force = true }));
            Assert.Equal(BigModelErrorCode.DestinationInsideSource, e.Code);
        }
        var link = _dir.Combine("link-to-source");
        Directory.CreateSymbolicLink(link, folder);
        Assert.Equal(BigModelErrorCode.DestinationInsideSource,
            Assert.Throws<BigModelException>(() => CheckpointSplitter.Plan(source, Path.Combine(link, "x"), new SplitOptions())).Code);
        Assert.Equal(BigModelErrorCode.SourceInsideDestination,
            Assert.Throws<BigModelException>(() => CheckpointSplitter.Plan(source, _dir.Path, new SplitOptions { Force = true })).Code);
        Assert.False(Directory.Exists(Path.Combine(folder, "split")));
    }

    [Fact]
    public void A_second_writer_to_the_same_destination_fails_clearly()
    {
        var (folder, _) = SingleFileModel();
        var source = Checkpoint.Open(folder);
        var destination = _dir.Combine("out");
        BigModelException? second = null;
        var progress = new SyncProgress(p =>
        {
            if (p.Phase != SplitPhase.WritingShards || second is not null) return;
            second = Assert.Throws<BigModelException>(() => CheckpointSplitter.Split(source, destination, new SplitOptions { Force = true }));
        });
        var first = CheckpointSplitter.Split(source, destination, new SplitOptions(), progress);
        Assert.NotNull(second);
        Assert.Equal(BigModelErrorCode.DestinationLocked, second.Code);
        Assert.Contains("another process", second.Message, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(first.Destination, "model.safetensors")));
        // The lock is released (and its file removed) once the first writer is done.
        AssertOnlyDestination(_dir.Path, "source", "out");
        CheckpointSplitter.Split(source, destination, new SplitOptions { Force = true });
    }

    [Fact]
    public void Leftovers_of_killed_runs_are_removed_by_the_next_run()
    {
        var (folder, _) = SingleFileModel();
        var staging = _dir.Combine(".out.bigmodel-tmp-0123456789ab");
        Directory.CreateDirectory(staging);
        File.WriteAllText(Path.Combine(staging, "model-00001-of-00002.safetensors"), "partial");
        File.WriteAllText(_dir.Combine(".out.bigmodel-lock"), "");
        Assert.Equal([staging], StagedDirectory.FindLeftovers(_dir.Combine("out")));

        var result = CheckpointSplitter.Split(Checkpoint.Open(folder), _dir.Combine("out"), new SplitOptions());
        Assert.Equal([staging], result.RecoveredLeftovers);
        Assert.Empty(StagedDirectory.FindLeftovers(_dir.Combine("out")));
        AssertOnlyDestination(_dir.Path, "source", "out");
    }

    [Fact]
    public void Rejects_bad_options()
    {
        var (folder, _) = SingleFileModel();
        var source = Checkpoint.Open(folder);
        Assert.Equal(BigModelErrorCode.InvalidSize,
            Assert.Throws<BigModelException>(() => CheckpointSplitter.Plan(source, _dir.Combine("o"), new SplitOptions { MaxShardSize = 0 })).Code);
        Assert.Equal(BigModelErrorCode.InvalidSize, Assert.Throws<BigModelException>(() => SplitOptions.Parse("5 parsecs")).Code);
        Assert.Equal(BigModelErrorCode.InvalidDType,
            Assert.Throws<BigModelException>(() => CheckpointSplitter.Plan(source, _dir.Combine("o"), new SplitOptions { DType = DType.I8 })).Code);
        Assert.Equal(BigModelErrorCode.InvalidDType, Assert.Throws<BigModelException>(() => SplitOptions.Parse("1GB", "float7")).Code);
        Assert.Equal(BigModelErrorCode.InvalidArgument,
            Assert.Throws<BigModelException>(() => CheckpointSplitter.Plan(source, _dir.Combine("o"), new SplitOptions { ChunkBytes = 100 })).Code);
    }

    [SkippableModelFact]
    public void Splits_stories260K_to_bfloat16_shards_that_read_back_exactly()
    {
        var source = Checkpoint.Open(SharedModels.Stories260K);
        var result = CheckpointSplitter.Split(source, _dir.Combine("stories"), SplitOptions.Parse("100KiB", "bfloat16"));
        Assert.True(result.Plan.Shards.Count > 5);
        Assert.Equal(source.Tensors.Select(t => t.Name), result.Checkpoint.Tensors.Select(t => t.Name));
        foreach (var tensor in source.Tensors)
        {
            var original = TensorData.ReadAll(tensor);
            var expected = new byte[original.Length / 2];
            DTypeConverter.Convert(DType.F32, DType.BF16, original, expected);
            Assert.Equal(expected, TensorData.ReadAll(result.Checkpoint[tensor.Name]));
        }
        Assert.Equal(DType.BF16, result.Checkpoint.Config!.TorchDType);
        Assert.Equal("llama", result.Checkpoint.Architecture?.Family);
    }

    private sealed class InjectedFailure : Exception;

    /// <summary>Reports on the calling thread, unlike <see cref="Progress{T}"/>, so a callback can fail the split.</summary>
    private sealed class SyncProgress(Action<SplitProgress> action) : IProgress<SplitProgress>
    {
        public void Report(SplitProgress value) => action(value);
    }
}
