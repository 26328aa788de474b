using System.Globalization;
using System.Text;
using BigModel.Checkpoints;
using BigModel.IO;

namespace BigModel.Sharding;

/// <summary>A tensor as it will be written: the source it is read from and its dtype, shape and size in the output.</summary>
public sealed class PlannedTensor
{
    internal PlannedTensor(TensorInfo source, DType dtype, long byteLength)
    {
        Source = source;
        DType = dtype;
        ByteLength = byteLength;
    }

    public string Name => Source.Name;

    public TensorInfo Source { get; }

    /// <summary>The dtype written (the source's, or the conversion target for float tensors).</summary>
    public DType DType { get; }

    public IReadOnlyList<long> Shape => Source.Shape;

    /// <summary>Bytes written for this tensor.</summary>
    public long ByteLength { get; }

    public bool IsConverted => Source.DType != DType;

    public override string ToString() => $"{Name} {DType} {Source.ShapeText}";
}

/// <summary>One output file: its name and tensors, and its exact size (header included).</summary>
public sealed class PlannedShard
{
    internal PlannedShard(int number, string fileName, IReadOnlyList<PlannedTensor> tensors, SafetensorsLayout layout)
    {
        Number = number;
        FileName = fileName;
        Tensors = tensors;
        Layout = layout;
    }

    /// <summary>1-based position among the shards.</summary>
    public int Number { get; }

    /// <summary><c>model.safetensors</c> or <c>model-00001-of-00004.safetensors</c>.</summary>
    public string FileName { get; }

    /// <summary>Tensors in the model's forward order (inside the file they are sorted by dtype and name).</summary>
    public IReadOnlyList<PlannedTensor> Tensors { get; }

    /// <summary>Bytes of tensor data.</summary>
    public long DataBytes => Layout.DataLength;

    /// <summary>Size of the file: 8-byte length, padded JSON header, data.</summary>
    public long FileBytes => Layout.FileLength;

    internal SafetensorsLayout Layout { get; }

    public override string ToString() => $"{FileName}: {Tensors.Count} tensors, {ByteSize.Format(DataBytes)}";
}

/// <summary>A tensor name left out of the output because it views exactly the same bytes as another (tied weights).</summary>
/// <param name="Name">The name not written.</param>
/// <param name="StoredAs">The name under which the bytes are written.</param>
public sealed record TensorAlias(string Name, string StoredAs);

/// <summary>
/// Everything a split will do, decided before anything is written: the shards with their tensors and sizes, the
/// index, the other files copied, and the total output. -WhatIf shows it; <see cref="CheckpointSplitter.Execute"/> runs it.
/// </summary>
public sealed class SplitPlan
{
    internal SplitPlan(Checkpoint source, string destination, SplitOptions options, IReadOnlyList<PlannedShard> shards,
        long totalSize, byte[]? index, IReadOnlyList<CompanionFile> companions, IReadOnlyList<TensorAlias> aliases,
        IReadOnlyList<string> warnings, bool destinationExists)
    {
        Source = source;
        Destination = destination;
        Options = options;
        Shards = shards;
        TotalSize = totalSize;
        IndexBytes = index;
        CompanionFiles = companions;
        Aliases = aliases;
        Warnings = warnings;
        DestinationExists = destinationExists;
    }

    public Checkpoint Source { get; }

    /// <summary>The destination folder, absolute.</summary>
    public string Destination { get; }

    public SplitOptions Options { get; }

    public IReadOnlyList<PlannedShard> Shards { get; }

    /// <summary>True when there is more than one shard, and so an index.</summary>
    public bool IsSharded => Shards.Count > 1;

    /// <summary><c>model.safetensors.index.json</c> when sharded, else null.</summary>
    public string? IndexFileName => IsSharded ? ShardIndexJson.FileName : null;

    /// <summary>Bytes of tensor data written: the index's metadata.total_size.</summary>
    public long TotalSize { get; }

    /// <summary>Bytes of tensor data read from the source.</summary>
    public long SourceBytes => Shards.Sum(s => s.Tensors.Sum(t => t.Source.ByteLength));

    /// <summary>Every byte the destination will hold: shards, index and copied files.</summary>
    public long OutputBytes => Shards.Sum(s => s.FileBytes) + (IndexBytes?.LongLength ?? 0) + CompanionFiles.Sum(c => c.Length);

    /// <summary>Number of tensors written.</summary>
    public int TensorCount => Shards.Sum(s => s.Tensors.Count);

    /// <summary>Non-weight files of the source folder copied beside the shards.</summary>
    public IReadOnlyList<CompanionFile> CompanionFiles { get; }

    /// <summary>Names not written because they share their bytes with another tensor.</summary>
    public IReadOnlyList<TensorAlias> Aliases { get; }

    /// <summary>Things worth telling the user that do not stop the split (files not copied, and why).</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>True when the destination already had content when planned (it is replaced only with Force).</summary>
    public bool DestinationExists { get; }

    /// <summary>The exact bytes of the index file, or null for a single shard.</summary>
    internal byte[]? IndexBytes { get; }

    /// <summary>A readable description: one line per shard, then the totals.</summary>
    public string Describe(bool listTensors = false)
    {
        var text = new StringBuilder();
        var culture = CultureInfo.InvariantCulture;
        text.Append(culture, $"Split {Source.Path} into {Destination}").AppendLine();
        foreach (var shard in Shards)
        {
            text.Append(culture, $"  {shard.FileName}  {shard.Tensors.Count} tensors  {ByteSize.Format(shard.DataBytes)} ({shard.FileBytes} bytes on disk)").AppendLine();
            if (!listTensors) continue;
            foreach (var t in shard.Tensors)
                text.Append(culture, $"    {t.Name}  {t.DType}{(t.IsConverted ? " (from " + t.Source.DType + ")" : "")}  {t.Source.ShapeText}  {t.ByteLength}").AppendLine();
        }
        if (IndexFileName is not null) text.Append(culture, $"  {IndexFileName}  total_size {TotalSize}").AppendLine();
        foreach (var c in CompanionFiles)
            text.Append(culture, $"  {c.RelativePath}  copied{(c.UpdatesDType ? ", torch_dtype set to " + Options.DType!.Value.TorchName() : "")}").AppendLine();
        foreach (var a in Aliases) text.Append(culture, $"  {a.Name} not written: same bytes as {a.StoredAs}").AppendLine();
        text.Append(culture, $"{Shards.Count} shard(s), {TensorCount} tensors, {ByteSize.Format(TotalSize)} of tensor data, {ByteSize.Format(OutputBytes)} in all");
        if (DestinationExists) text.Append("; replaces the existing destination");
        return text.ToString();
    }

    public override string ToString() => Describe();
}
