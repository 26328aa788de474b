using System.Buffers.Binary;
using System.Text;

namespace BigModel.Tests.Support;

/// <summary>Emits pickle opcodes one by one, so tests can write exactly the stream they mean, valid or hostile.</summary>
public sealed class PickleBuilder
{
    private readonly MemoryStream _bytes = new();

    public PickleBuilder Op(byte code) { _bytes.WriteByte(code); return this; }

    public PickleBuilder Raw(params byte[] bytes) { _bytes.Write(bytes); return this; }

    public PickleBuilder Text(string ascii) => Raw(Encoding.ASCII.GetBytes(ascii));

    public PickleBuilder Proto(int protocol) => Raw(0x80, (byte)protocol);

    public PickleBuilder Mark() => Op((byte)'(');

    public PickleBuilder Stop() => Op((byte)'.');

    public PickleBuilder None() => Op((byte)'N');

    public PickleBuilder False() => Op(0x89);

    public PickleBuilder True() => Op(0x88);

    public PickleBuilder Global(string module, string name) => Op((byte)'c').Text(module + "\n" + name + "\n");

    public PickleBuilder StackGlobal(string module, string name) => Str(module).Str(name).Op(0x93);

    public PickleBuilder Str(string s)
    {
        var utf8 = Encoding.UTF8.GetBytes(s);
        Op((byte)'X');
        Span<byte> n = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(n, utf8.Length);
        return Raw(n.ToArray()).Raw(utf8);
    }

    public PickleBuilder Int(long value)
    {
        if (value is >= 0 and < 256) return Raw((byte)'K', (byte)value);
        if (value is >= int.MinValue and <= int.MaxValue)
        {
            var b = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(b, (int)value);
            return Op((byte)'J').Raw(b);
        }
        var l = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(l, value);
        return Raw(0x8a, 8).Raw(l);
    }

    public PickleBuilder Tuple(params long[] values)
    {
        if (values.Length == 0) return Op((byte)')');
        Mark();
        foreach (var v in values) Int(v);
        return Op((byte)'t');
    }

    public PickleBuilder EmptyTuple() => Op((byte)')');

    public PickleBuilder TupleFromMark() => Op((byte)'t');

    public PickleBuilder EmptyDict() => Op((byte)'}');

    public PickleBuilder EmptyList() => Op((byte)']');

    public PickleBuilder SetItem() => Op((byte)'s');

    public PickleBuilder SetItems() => Op((byte)'u');

    public PickleBuilder Append() => Op((byte)'a');

    public PickleBuilder Reduce() => Op((byte)'R');

    public PickleBuilder Build() => Op((byte)'b');

    public PickleBuilder BinPersId() => Op((byte)'Q');

    public PickleBuilder Put(int slot) => Raw((byte)'q', (byte)slot);

    public PickleBuilder Get(int slot) => Raw((byte)'h', (byte)slot);

    public PickleBuilder OrderedDict() => Global("collections", "OrderedDict").EmptyTuple().Reduce();

    /// <summary>The persistent id torch.save writes for a typed storage: ('storage', torch.&lt;type&gt;, key, 'cpu', numel).</summary>
    public PickleBuilder Storage(string storageType, string key, long numel, string module = "torch") =>
        Mark().Str("storage").Global(module, storageType).Str(key).Str("cpu").Int(numel).TupleFromMark().BinPersId();

    /// <summary>torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()).</summary>
    public PickleBuilder TensorV2(string storageType, string key, long numel, long offset, long[] shape, long[] stride) =>
        Global("torch._utils", "_rebuild_tensor_v2").Mark().Storage(storageType, key, numel).Int(offset).Tuple(shape).Tuple(stride)
            .False().OrderedDict().TupleFromMark().Reduce();

    public byte[] ToArray() => _bytes.ToArray();
}
