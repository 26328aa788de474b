using BigModel.Checkpoints;

namespace BigModel.Architectures;

/// <summary>
/// The model's forward order of tensor and module names: numeric-aware natural order, refined by the family's
/// knowledge of which top-level blocks come first (embeddings, layers 0..N-1, final norm, head). Sharding and
/// device maps both use it, so consecutive layers land in the same shard and on the same device.
/// </summary>
public sealed class TensorOrder : IComparer<string>
{
    private readonly ArchitectureSpec? _spec;

    public TensorOrder(ArchitectureSpec? spec) => _spec = spec;

    public int Compare(string? x, string? y)
    {
        if (_spec is not null && x is not null && y is not null)
        {
            int rank = _spec.ForwardRank(x).CompareTo(_spec.ForwardRank(y));
            if (rank != 0) return rank;
        }
        return NaturalOrder.Instance.Compare(x, y);
    }

    public static IReadOnlyList<TensorInfo> Sort(IEnumerable<TensorInfo> tensors, ArchitectureSpec? spec) =>
        tensors.OrderBy(t => t.Name, new TensorOrder(spec)).ToList();
}
