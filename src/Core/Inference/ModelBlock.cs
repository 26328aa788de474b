using BigModel.Checkpoints;

namespace BigModel.Inference;

/// <summary>
/// One tensor a block computes with: its name inside the block and the checkpoint tensor holding it.
/// <paramref name="Gathered"/> marks an embedding table the block only looks rows up in: a use reads a few rows,
/// so it is never read or copied whole, wherever it is placed.
/// </summary>
internal sealed record BlockTensor(string Key, TensorInfo Source, bool Gathered = false);

/// <summary>
/// The unit of placement, loading and prefetch: an embedding, one transformer layer, a final norm, a head. Blocks
/// run in the order of <see cref="Index"/>; a tied head's block lists the embedding's tensor under its own key.
/// </summary>
internal sealed class ModelBlock
{
    public ModelBlock(int index, string name, IReadOnlyList<BlockTensor> tensors)
    {
        Index = index;
        Name = name;
        Tensors = tensors;
    }

    public int Index { get; }

    /// <summary>The module name placements use, e.g. <c>model.layers.3</c>.</summary>
    public string Name { get; }

    public IReadOnlyList<BlockTensor> Tensors { get; }

    /// <summary>Bytes of its tensors as stored.</summary>
    public long StoredBytes => Tensors.Sum(t => t.Source.ByteLength);

    public override string ToString() => Name;
}
