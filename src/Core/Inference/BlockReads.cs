using BigModel.Checkpoints;
using BigModel.IO;
using Microsoft.Win32.SafeHandles;

namespace BigModel.Inference;

/// <summary>
/// How one use of a block reads its streamed weights into a staging region: a few large page-aligned file extents
/// (a block's weights usually lie next to each other in the file, so one extent covers them all), and where in the
/// region each weight lands. Large aligned reads are what both unbuffered I/O and fast storage want: the kernel
/// splits them into many requests in flight.
/// </summary>
internal sealed class BlockReads
{
    /// <summary>Weights closer than this in the file are read in one extent, gap included.</summary>
    private const long JoinGap = 1 << 20;

    private BlockReads(IReadOnlyList<Extent> extents, IReadOnlyList<Placed> weights, long regionBytes)
    {
        Extents = extents;
        Weights = weights;
        RegionBytes = regionBytes;
    }

    /// <summary>File ranges to read, in region order.</summary>
    public IReadOnlyList<Extent> Extents { get; }

    /// <summary>Each weight's block key, source and offset in the region.</summary>
    public IReadOnlyList<Placed> Weights { get; }

    /// <summary>Bytes of staging one use of the block takes.</summary>
    public long RegionBytes { get; }

    /// <summary>A file range read into the region at <see cref="RegionOffset"/>; <see cref="Needed"/> bytes of it must exist.</summary>
    public readonly record struct Extent(string File, long FileOffset, long Length, long Needed, long RegionOffset);

    /// <summary>A weight of the block and where its bytes land in the region.</summary>
    public readonly record struct Placed(string Key, TensorInfo Source, long RegionOffset);

    /// <summary>
    /// The reads for <paramref name="weights"/> (block key, source), all contiguous and aligned to their element
    /// size in the file; null when there are none.
    /// </summary>
    public static BlockReads? Plan(IReadOnlyList<(string Key, TensorInfo Source)> weights)
    {
        if (weights.Count == 0) return null;
        var ordered = weights.OrderBy(w => w.Source.File, StringComparer.Ordinal).ThenBy(w => w.Source.DataOffset).ToList();
        var extents = new List<Extent>();
        var placed = new List<Placed>(ordered.Count);
        long region = 0;
        int first = 0;
        while (first < ordered.Count)
        {
            var file = ordered[first].Source.File;
            long start = UnbufferedFile.AlignDown(ordered[first].Source.DataOffset);
            long end = ordered[first].Source.DataOffset + ordered[first].Source.ByteLength;
            int last = first;
            while (last + 1 < ordered.Count && ordered[last + 1].Source.File == file
                && ordered[last + 1].Source.DataOffset <= end + JoinGap)
            {
                last++;
                end = Math.Max(end, ordered[last].Source.DataOffset + ordered[last].Source.ByteLength);
            }
            long length = UnbufferedFile.AlignUp(end) - start;
            extents.Add(new Extent(file, start, length, end - start, region));
            for (int i = first; i <= last; i++)
                placed.Add(new Placed(ordered[i].Key, ordered[i].Source, region + ordered[i].Source.DataOffset - start));
            region += length;
            first = last + 1;
        }
        return new BlockReads(extents, placed, region);
    }

    /// <summary>
    /// Reads <paramref name="extent"/> to <paramref name="destination"/> (aligned, as unbuffered handles require).
    /// A read may end short only at the end of the file, past the bytes the weights need.
    /// </summary>
    public static unsafe void Read(SafeFileHandle handle, Extent extent, IntPtr destination) =>
        WeightReader.ReadAtLeast(handle, (byte*)destination, extent.Needed, extent.Length, extent.FileOffset, extent.File, null);
}
