using System.Globalization;
using BigModel.Errors;

namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// Turns the unpickled state dict into <see cref="TensorInfo"/>s. Nested dicts and lists (<c>{"model": {...}}</c>,
/// optimizer states) become dotted names, other leaves (ints, strings, None) are skipped, and every tensor view is
/// checked to lie inside its storage. The walk is iterative, visits each container once (so shared or cyclic
/// references cannot multiply the work) and stops at a bounded depth.
/// </summary>
internal static class StateDictFlattener
{
    private sealed class Frame(object container, string prefix, int depth)
    {
        public object Container { get; } = container;
        public string Prefix { get; } = prefix;
        public int Depth { get; } = depth;
        public int Next { get; set; }
    }

    public static List<TensorInfo> Flatten(object? root, string file, PyTorchLimits limits)
    {
        if (root is not PyDict)
        {
            var what = root is TorchTensor
                ? "a single tensor"
                : $"a {RestrictedUnpickler.TypeName(root)}";
            throw new BigModelException(BigModelErrorCode.PickleMalformed,
                $"the archive holds {what}, not a state dict (a dict of tensor names to tensors); save model.state_dict() instead.", file);
        }
        var tensors = new List<TensorInfo>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var visited = new HashSet<object>(ReferenceEqualityComparer.Instance) { root };
        var stack = new Stack<Frame>();
        stack.Push(new Frame(root, "", 0));
        while (stack.Count > 0)
        {
            var frame = stack.Peek();
            if (!TryNext(frame, out var key, out var value))
            {
                stack.Pop();
                continue;
            }
            var part = key switch
            {
                string s => s,
                long l => l.ToString(CultureInfo.InvariantCulture),
                _ => null,
            };
            if (part is null) continue;
            if ((long)frame.Prefix.Length + 1 + part.Length > limits.MaxNameLength)
                throw new BigModelException(BigModelErrorCode.PickleTooLarge,
                    $"a tensor name would be longer than {limits.MaxNameLength} characters.", file, tensor: ZipArchiveIndex.Show(frame.Prefix));
            var name = frame.Prefix.Length == 0 ? part : frame.Prefix + "." + part;
            switch (value)
            {
                case TorchTensor tensor:
                    if (!names.Add(name))
                        throw new BigModelException(BigModelErrorCode.PickleMalformed, "two entries of the state dict flatten to the same tensor name.", file, tensor: name);
                    if (tensors.Count >= limits.MaxTensors)
                        throw new BigModelException(BigModelErrorCode.PickleTooLarge, $"the archive holds more than {limits.MaxTensors} tensors.", file);
                    tensors.Add(Describe(tensor, name, file));
                    break;
                case PyDict or PyList or object?[] when visited.Add(value):
                    if (frame.Depth + 1 > limits.MaxNestingDepth)
                        throw new BigModelException(BigModelErrorCode.PickleTooLarge,
                            $"the state dict nests deeper than {limits.MaxNestingDepth} levels.", file, tensor: ZipArchiveIndex.Show(name));
                    stack.Push(new Frame(value, name, frame.Depth + 1));
                    break;
            }
        }
        return tensors;
    }

    private static bool TryNext(Frame frame, out object? key, out object? value)
    {
        int i = frame.Next;
        switch (frame.Container)
        {
            case PyDict dict when i < dict.Count:
                key = dict.KeyAt(i);
                value = dict.ValueAt(i);
                break;
            case PyList list when i < list.Items.Count:
                key = (long)i;
                value = list.Items[i];
                break;
            case object?[] tuple when i < tuple.Length:
                key = (long)i;
                value = tuple[i];
                break;
            default:
                key = value = null;
                return false;
        }
        frame.Next = i + 1;
        return true;
    }

    /// <summary>The tensor's place in the archive file, after checking that its view lies inside its storage.</summary>
    private static TensorInfo Describe(TorchTensor t, string name, string file)
    {
        int elementBytes = t.DType.Bits() / 8;
        long storageElements = t.Storage.ByteLength / elementBytes;
        long elements = 1;
        long lastIndex = t.StorageOffset;
        try
        {
            foreach (var d in t.Shape) elements = checked(elements * d);
            if (elements > 0)
            {
                for (int i = 0; i < t.Shape.Length; i++) lastIndex = checked(lastIndex + (t.Shape[i] - 1) * t.Strides[i]);
            }
            _ = checked(elements * elementBytes);
        }
        catch (OverflowException)
        {
            throw new BigModelException(BigModelErrorCode.PickleInvalidTensor,
                $"the shape [{string.Join(", ", t.Shape)}] with strides [{string.Join(", ", t.Strides)}] overflows 64-bit sizes.", file, tensor: name);
        }
        bool fits = elements == 0 ? t.StorageOffset <= storageElements : lastIndex < storageElements;
        if (!fits)
            throw new BigModelException(BigModelErrorCode.PickleStorageOutOfRange,
                $"the view (offset {t.StorageOffset}, shape [{string.Join(", ", t.Shape)}], strides [{string.Join(", ", t.Strides)}]) reaches element {(elements == 0 ? t.StorageOffset : lastIndex)} of storage '{t.Storage.Key}', which holds {storageElements} {t.DType.TorchName()} elements.",
                file, t.Storage.DataOffset, name);
        long dataOffset = t.Storage.DataOffset + t.StorageOffset * elementBytes;
        return new TensorInfo(name, t.DType, t.Shape, elements * elementBytes, file, dataOffset, elements == 0 || IsRowMajor(t) ? null : t.Strides);
    }

    /// <summary>torch's is_contiguous for a non-empty tensor: strides of a dense row-major layout, ignoring dimensions of size 1.</summary>
    private static bool IsRowMajor(TorchTensor t)
    {
        long expected = 1;
        for (int i = t.Shape.Length - 1; i >= 0; i--)
        {
            if (t.Shape[i] != 1 && t.Strides[i] != expected) return false;
            expected *= t.Shape[i];
        }
        return true;
    }
}
