using BigModel.Errors;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// Keys and values of every attention layer for one sequence, each preallocated to the sequence's full length on
/// the device and in the type its layer computes with, so decoding never reallocates or concatenates. The memory
/// is reserved, not written: only positions already computed are ever read, so a cache sized for many new tokens
/// costs physical memory only for the tokens actually generated.
/// </summary>
internal sealed class KvCache : IDisposable
{
    private readonly Tensor?[] _keys;
    private readonly Tensor?[] _values;
    private readonly (nint Keys, nint Values, ScalarType Type)?[] _checked;  // layers Slots has validated, and where their memory is
    private readonly int[] _finiteRows;     // per layer: leading positions whose float16 keys and values hold no infinity or NaN

    public KvCache(int layers, int capacity)
    {
        _keys = new Tensor?[layers];
        _values = new Tensor?[layers];
        _checked = new (nint, nint, ScalarType)?[layers];
        _finiteRows = new int[layers];
        Capacity = capacity;
    }

    /// <summary>Positions each layer can hold.</summary>
    public int Capacity { get; }

    /// <summary>
    /// Stores <paramref name="k"/>, <paramref name="v"/> (<c>[batch, kvHeads, T, headDim]</c>) at positions
    /// <paramref name="start"/>..start+T and returns views of everything cached so far.
    /// </summary>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor k, Tensor v, int start)
    {
        long t = k.shape[2];
        if (start + t > Capacity)
            throw new BigModelException(BigModelErrorCode.InferenceFailed, $"the sequence outgrew its cache ({start + t} > {Capacity} positions).");
        var keys = _keys[layer] ??= Allocate(k.shape[0], k.shape[1], k.shape[3], k.dtype, k.device);
        var values = _values[layer] ??= Allocate(v.shape[0], v.shape[1], v.shape[3], v.dtype, v.device);
        _finiteRows[layer] = Math.Min(_finiteRows[layer], start);
        using (var slot = keys.narrow(2, start, t)) slot.copy_(k);
        using (var slot = values.narrow(2, start, t)) slot.copy_(v);
        return (keys.narrow(2, 0, start + t), values.narrow(2, 0, start + t));
    }

    /// <summary>
    /// The start of <paramref name="layer"/>'s key and value memory on the CPU, of <paramref name="type"/> and laid
    /// out <c>[1, kvHeads, Capacity, headDim]</c> (allocated on first use), for a caller that writes position
    /// <paramref name="position"/> itself.
    /// </summary>
    public unsafe void Slots(int layer, int kvHeads, int headDim, int position, ScalarType type, out byte* keyMemory, out byte* valueMemory)
    {
        if (position >= Capacity)
            throw new BigModelException(BigModelErrorCode.InferenceFailed, $"the sequence outgrew its cache ({position + 1} > {Capacity} positions).");
        // The caller writes this position: what was known of it no longer holds.
        _finiteRows[layer] = Math.Min(_finiteRows[layer], position);
        // Checked once per layer: a cache tensor never moves or changes type once allocated.
        if (_checked[layer] is (nint k, nint v, var checkedType) && checkedType == type)
        {
            keyMemory = (byte*)k;
            valueMemory = (byte*)v;
            return;
        }
        var keys = _keys[layer] ??= Allocate(1, kvHeads, headDim, type, CPU);
        var values = _values[layer] ??= Allocate(1, kvHeads, headDim, type, CPU);
        // A prompt's keys went in through Append, shaped by its tensors: the same layout, or this path cannot share it.
        long[] expected = [1, kvHeads, Capacity, headDim];
        if (keys.dtype != type || values.dtype != type || keys.device_type != TorchSharp.DeviceType.CPU
            || !keys.shape.SequenceEqual(expected) || !values.shape.SequenceEqual(expected))
            throw new BigModelException(BigModelErrorCode.InferenceFailed, $"layer {layer}'s cache is not {type} [{string.Join(", ", expected)}] on the CPU.");
        keyMemory = (byte*)TorchTypes.DataPointer(keys);
        valueMemory = (byte*)TorchTypes.DataPointer(values);
        _checked[layer] = ((nint)keyMemory, (nint)valueMemory, type);
    }

    /// <summary>
    /// Whether <paramref name="layer"/>'s float16 keys and values (memory from <see cref="Slots"/>) hold no infinity
    /// or NaN at positions 0..<paramref name="last"/>, for every head. Positions found finite are remembered until
    /// they are written again, so each token looks at its own row only instead of the whole window every step.
    /// </summary>
    public unsafe bool HalfRowsFinite(int layer, int kvHeads, int headDim, int last, byte* keyMemory, byte* valueMemory)
    {
        int from = _finiteRows[layer];
        if (from > last) return true;
        long rows = last + 1 - from;
        for (int g = 0; g < kvHeads; g++)
        {
            long at = ((long)g * Capacity + from) * headDim;
            if (InputConversion.HasNonFiniteHalf((ushort*)keyMemory + at, rows * headDim)
                || InputConversion.HasNonFiniteHalf((ushort*)valueMemory + at, rows * headDim))
                return false;
        }
        _finiteRows[layer] = last + 1;
        return true;
    }

    // Detached from the forward step's dispose scope: the cache outlives each step's temporaries.
    private Tensor Allocate(long batch, long kvHeads, long headDim, ScalarType type, Device device) =>
        TorchTypes.Own(empty([batch, kvHeads, Capacity, headDim], type, device));

    /// <summary>Bytes one cache of <paramref name="capacity"/> positions takes.</summary>
    public static long Bytes(int layers, int kvHeads, int headDim, int capacity, int elementSize) =>
        2L * layers * kvHeads * headDim * (long)capacity * elementSize;

    public void Dispose()
    {
        foreach (var t in _keys) t?.Dispose();
        foreach (var t in _values) t?.Dispose();
        Array.Clear(_keys);
        Array.Clear(_values);
        Array.Clear(_checked);
        Array.Clear(_finiteRows);
    }
}
