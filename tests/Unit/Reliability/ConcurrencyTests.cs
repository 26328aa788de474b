using System.Security.Cryptography;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Inference;
using BigModel.Sharding;
using BigModel.Tests.Support;
using Xunit.Abstractions;

namespace BigModel.Tests.Reliability;

/// <summary>
/// Several users of one checkpoint or offload folder at once: readers (processes and threads) all see the same
/// tensors; a second writer to a destination another writer holds fails at once with DestinationLocked, naming the
/// destination, and leaves the first writer's output intact.
/// </summary>
public sealed class ConcurrencyTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan ChildTimeout = TimeSpan.FromMinutes(2);
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A sharded checkpoint (an index and three shards) of random tensors, written by the harness.</summary>
    private string Source(string name = "source", string size = "6MiB")
    {
        var folder = _dir.Combine(name);
        var (code, text) = HarnessProcess.Run(ChildTimeout, "generate", "--out", folder, "--size", size, "--tensor-size", "512KiB", "--shards", "3", "--seed", "4");
        Assert.True(code == 0, text);
        return folder;
    }

    [Fact]
    public void A_second_process_splitting_to_the_same_destination_fails_clearly_and_the_first_completes()
    {
        var source = Source();
        var destination = _dir.Combine("out");
        using var first = HarnessProcess.Start("split", source, destination, "--max-shard-size", "1MiB", "--phases", "--pause-at", "WritingShards 2");
        Assert.True(first.WaitForLine("paused", ChildTimeout), "the first split never reached its second shard");
        // Nothing under the destination's name while the first writer is busy.
        Assert.False(Directory.Exists(destination));

        var (code, text) = HarnessProcess.Run(ChildTimeout, "split", source, destination, "--max-shard-size", "1MiB", "--force");
        output.WriteLine(text);
        Assert.Equal(2, code);
        var error = HarnessProcess.LastJson(text);
        Assert.Equal(nameof(BigModelErrorCode.DestinationLocked), error.GetProperty("code").GetString());
        var message = error.GetProperty("message").GetString()!;
        Assert.Contains(destination, message, StringComparison.Ordinal);
        Assert.Contains("another process or thread is writing this destination", message, StringComparison.Ordinal);

        first.Resume();
        var (firstCode, firstText) = first.Finish(ChildTimeout);
        Assert.True(firstCode == 0, firstText);
        Assert.Equal(Digest(source), Digest(destination));
    }

    [Fact]
    public void A_second_process_converting_into_the_same_offload_folder_fails_clearly_and_the_first_completes()
    {
        var source = Source();
        var folder = _dir.Combine("offload");
        using var first = HarnessProcess.Start("offload", source, folder, "--phases", "--pause-at", "Converting 3");
        Assert.True(first.WaitForLine("paused", ChildTimeout), "the first conversion never reached its third tensor");

        var (code, text) = HarnessProcess.Run(ChildTimeout, "offload", source, folder);
        output.WriteLine(text);
        Assert.Equal(2, code);
        var error = HarnessProcess.LastJson(text);
        Assert.Equal(nameof(BigModelErrorCode.DestinationLocked), error.GetProperty("code").GetString());
        var message = error.GetProperty("message").GetString()!;
        Assert.Contains(Path.Combine(folder, OffloadConverter.FilePrefix), message, StringComparison.Ordinal);
        Assert.Contains("another process or thread is writing this destination", message, StringComparison.Ordinal);
        // Only the first writer's temporary file and lock: no second file, nothing under a final name yet.
        Assert.DoesNotContain(Directory.GetFiles(folder), f => f.EndsWith(".safetensors", StringComparison.Ordinal));

        first.Resume();
        var (firstCode, firstText) = first.Finish(ChildTimeout);
        Assert.True(firstCode == 0, firstText);
        Assert.Equal([HarnessProcess.LastJson(firstText).GetProperty("file").GetString()!], Directory.GetFiles(folder).Select(Path.GetFileName));
        Assert.Equal(Digest(source), Digest(folder));
    }

    [Fact]
    public void A_second_thread_splitting_to_the_same_destination_fails_clearly()
    {
        var checkpoint = Checkpoint.Open(Source());
        var destination = _dir.Combine("out");
        Exception? second = null;
        var reporter = new Reporter<SplitProgress>(p =>
        {
            if (p.Phase != SplitPhase.WritingShards || second is not null) return;
            second = Record.Exception(() => Task.Run(() => CheckpointSplitter.Split(checkpoint, destination, new SplitOptions { Force = true })).GetAwaiter().GetResult());
        });
        CheckpointSplitter.Split(checkpoint, destination, new SplitOptions { MaxShardSize = 1L << 20 }, reporter);
        var e = Assert.IsType<BigModelException>(second);
        Assert.Equal(BigModelErrorCode.DestinationLocked, e.Code);
        Assert.Equal(destination, e.File);
        Assert.Equal(Digest(checkpoint.Directory), Digest(destination));
    }

    [Fact]
    public void A_second_thread_converting_the_same_tensors_fails_clearly_and_the_first_file_is_whole()
    {
        var tensors = Checkpoint.Open(Source()).Tensors;
        var folder = _dir.Combine("offload");
        Exception? second = null;
        var reporter = new Reporter<InferenceLoadProgress>(p =>
        {
            if (p.Stage != "Converting" || p.BlocksDone != 2 || second is not null) return;
            second = Record.Exception(() => Task.Run(() => OffloadConverter.Convert(tensors, folder, null, CancellationToken.None)).GetAwaiter().GetResult());
        });
        var converted = OffloadConverter.Convert(tensors, folder, reporter, CancellationToken.None);
        var e = Assert.IsType<BigModelException>(second);
        Assert.Equal(BigModelErrorCode.DestinationLocked, e.Code);
        Assert.Equal(converted.Values.First().File, e.File);
        Assert.Equal(Digest(tensors), Digest(converted.Values.OrderBy(t => t.Name, StringComparer.Ordinal)));
    }

    [Fact]
    public void Threads_racing_to_convert_the_same_tensors_either_get_the_one_file_or_DestinationLocked()
    {
        var tensors = Checkpoint.Open(Source(size: "12MiB")).Tensors;
        var folder = _dir.Combine("offload");
        var outcomes = Enumerable.Range(0, 6).AsParallel().WithDegreeOfParallelism(6).Select(_ =>
        {
            try
            {
                return OffloadConverter.Convert(tensors, folder, null, CancellationToken.None).Values.First().File;
            }
            catch (BigModelException e) when (e.Code == BigModelErrorCode.DestinationLocked)
            {
                return "locked";
            }
        }).ToList();
        output.WriteLine(string.Join(Environment.NewLine, outcomes.Select(Path.GetFileName)));
        var files = outcomes.Where(o => o != "locked").Distinct().ToList();
        var file = Assert.Single(files);
        Assert.Equal([file], Directory.GetFiles(folder));
        Assert.Equal(Digest(tensors), Digest(SafetensorsHeader.Read(file).Tensors.OrderBy(t => t.Name, StringComparer.Ordinal)));
    }

    [Fact]
    public void Parallel_reader_processes_of_one_checkpoint_and_one_offload_folder_see_identical_tensors()
    {
        var source = Source();
        var folder = _dir.Combine("offload");
        var (code, text) = HarnessProcess.Run(ChildTimeout, "offload", source, folder);
        Assert.True(code == 0, text);
        var converted = HarnessProcess.LastJson(text);
        var stamp = File.GetLastWriteTimeUtc(Path.Combine(folder, converted.GetProperty("file").GetString()!));

        // Four readers of the checkpoint, two of the offload folder's file, and two sessions that find it converted.
        var children = new List<HarnessProcess>();
        try
        {
            for (int i = 0; i < 4; i++) children.Add(HarnessProcess.Start("digest", source));
            for (int i = 0; i < 2; i++) children.Add(HarnessProcess.Start("digest", folder));
            for (int i = 0; i < 2; i++) children.Add(HarnessProcess.Start("offload", source, folder));
            var results = children.Select(c => c.Finish(ChildTimeout)).ToList();
            foreach (var (c, t) in results) Assert.True(c == 0, t);
            var json = results.Select(r => HarnessProcess.LastJson(r.Output)).ToList();
            var digests = json.Select(j => j.GetProperty("digest").GetString()).ToList();
            output.WriteLine(string.Join(Environment.NewLine, digests));
            Assert.Single(digests.Distinct());
            Assert.Equal(Checkpoint.Open(source).Tensors.Count, json[0].GetProperty("tensors").GetInt32());
            Assert.All(json.Skip(6), j => Assert.Equal(converted.GetProperty("file").GetString(), j.GetProperty("file").GetString()));
        }
        finally
        {
            foreach (var c in children) c.Dispose();
        }
        // The readers converted nothing again.
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(Path.Combine(folder, converted.GetProperty("file").GetString()!)));
    }

    [Fact]
    public void Parallel_reader_threads_of_one_checkpoint_and_one_offload_folder_see_identical_tensors()
    {
        var source = Source();
        var folder = _dir.Combine("offload");
        var expected = Digest(source);
        var file = OffloadConverter.Convert(Checkpoint.Open(source).Tensors, folder, null, CancellationToken.None).Values.First().File;
        var stamp = File.GetLastWriteTimeUtc(file);

        var results = Enumerable.Range(0, 8).AsParallel().WithDegreeOfParallelism(8).Select(i =>
        {
            var checkpoint = Checkpoint.Open(source);
            if (i % 2 == 0) return Digest(checkpoint.Tensors);
            var converted = OffloadConverter.Convert(checkpoint.Tensors, folder, null, CancellationToken.None);
            Assert.Equal(file, converted.Values.First().File);
            return Digest(converted.Values.OrderBy(t => t.Name, StringComparer.Ordinal));
        }).ToList();
        Assert.All(results, r => Assert.Equal(expected, r));
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(file));
    }

    /// <summary>A checkpoint's tensors, in name order, hashed with their names, dtypes and shapes.</summary>
    private static string Digest(string folder) =>
        Digest(Directory.EnumerateFiles(folder, OffloadConverter.FilePrefix + "*.safetensors").ToList() is { Count: > 0 } converted
            ? converted.SelectMany(f => SafetensorsHeader.Read(f).Tensors).OrderBy(t => t.Name, StringComparer.Ordinal)
            : Checkpoint.Open(folder).Tensors.OrderBy(t => t.Name, StringComparer.Ordinal));

    private static string Digest(IEnumerable<TensorInfo> tensors)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var t in tensors.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes($"{t.Name}|{t.DType}|{t.ShapeText}|"));
            hash.AppendData(TensorData.ReadAll(t));
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    private sealed class Reporter<T>(Action<T> action) : IProgress<T>
    {
        public void Report(T value) => action(value);
    }
}
