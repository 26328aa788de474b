using System.Text;
using BigModel.Checkpoints;

namespace BigModel.Fuzz.Archives;

/// <summary>
/// A pytorch_model.bin laid out as torch.save writes a state dict (protocol 2: an OrderedDict of
/// _rebuild_tensor_v2 calls over persistent-id storages, one storage per tensor, memoised globals), for tensor lists
/// taken from real checkpoints. Values are a plain byte sequence; only the structure matters to the fuzzer.
/// </summary>
public static class StateDictArchive
{
    private static readonly Dictionary<DType, string> StorageClass = new()
    {
        [DType.F32] = "FloatStorage", [DType.F64] = "DoubleStorage", [DType.F16] = "HalfStorage", [DType.BF16] = "BFloat16Storage",
        [DType.I64] = "LongStorage", [DType.I32] = "IntStorage", [DType.I16] = "ShortStorage", [DType.I8] = "CharStorage",
        [DType.U8] = "ByteStorage", [DType.BOOL] = "BoolStorage",
    };

    public static byte[] Build(IEnumerable<TensorSpec> tensors)
    {
        var pickle = new PickleWriter();
        pickle.Proto(2);
        pickle.Global("collections", "OrderedDict");
        pickle.Op(")R(");
        var storages = new List<(string, byte[])>();
        foreach (var t in tensors)
        {
            if (!StorageClass.TryGetValue(t.DType, out var storageClass)) continue;
            var key = storages.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            long elements = t.Shape.Aggregate(1L, (a, d) => a * d);
            pickle.Unicode(t.Name);
            pickle.Global("torch._utils", "_rebuild_tensor_v2");
            pickle.Op("((");
            pickle.Unicode("storage");
            pickle.Global("torch", storageClass);
            pickle.Unicode(key);
            pickle.Unicode("cpu");
            pickle.Int(elements);
            pickle.Op("tQ");
            pickle.Int(0);
            pickle.Tuple(t.Shape);
            pickle.Tuple(ContiguousStrides(t.Shape));
            pickle.Op("\u0089"); // NEWFALSE: requires_grad
            pickle.Global("collections", "OrderedDict");
            pickle.Op(")RtR");
            storages.Add((key, TorchArchive.Sequence((int)elements, t.DType.Bits() / 8)));
        }
        pickle.Op("u.");
        return TorchArchive.Builder(pickle.ToArray(), storages).ToArray();
    }

    private static long[] ContiguousStrides(IReadOnlyList<long> shape)
    {
        var strides = new long[shape.Count];
        long step = 1;
        for (int i = shape.Count - 1; i >= 0; i--)
        {
            strides[i] = step;
            step *= shape[i];
        }
        return strides;
    }

    /// <summary>The handful of protocol 2 opcodes torch.save uses, with globals memoised as the pickler does.</summary>
    private sealed class PickleWriter
    {
        private readonly List<byte> _bytes = [];
        private readonly Dictionary<string, int> _memo = new(StringComparer.Ordinal);

        public void Proto(byte version) => _bytes.AddRange([0x80, version]);

        public void Op(string opcodes) => _bytes.AddRange(opcodes.Select(c => (byte)c));

        public void Global(string module, string name)
        {
            var full = module + "\n" + name + "\n";
            if (_memo.TryGetValue(full, out var slot))
            {
                _bytes.AddRange([(byte)'h', (byte)slot]);
                return;
            }
            _bytes.Add((byte)'c');
            _bytes.AddRange(Encoding.ASCII.GetBytes(full));
            if (_memo.Count < 256)
            {
                _bytes.AddRange([(byte)'q', (byte)_memo.Count]);
                _memo[full] = _memo.Count;
            }
        }

        public void Unicode(string text)
        {
            var utf8 = Encoding.UTF8.GetBytes(text);
            _bytes.Add((byte)'X');
            _bytes.AddRange(BitConverter.GetBytes(utf8.Length));
            _bytes.AddRange(utf8);
        }

        public void Int(long value)
        {
            if (value is >= 0 and < 256) _bytes.AddRange([(byte)'K', (byte)value]);
            else
            {
                _bytes.Add((byte)'J');
                _bytes.AddRange(BitConverter.GetBytes((int)value));
            }
        }

        public void Tuple(IReadOnlyList<long> values)
        {
            if (values.Count == 0)
            {
                _bytes.Add((byte)')');
                return;
            }
            if (values.Count > 3) _bytes.Add((byte)'(');
            foreach (var v in values) Int(v);
            _bytes.Add(values.Count switch { 1 => 0x85, 2 => 0x86, 3 => 0x87, _ => (byte)'t' });
        }

        public byte[] ToArray() => [.. _bytes];
    }
}
