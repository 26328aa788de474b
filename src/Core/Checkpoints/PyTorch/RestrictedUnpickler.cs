using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using System.Text;
using BigModel.Errors;
using static BigModel.Checkpoints.PyTorch.PickleOpcodes;

namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// A pickle virtual machine that builds plain data only, with the semantics of <c>torch.load(weights_only=True)</c>.
/// It runs as one loop over the opcodes (no recursion, whatever the nesting of the input), never imports or calls
/// anything: a global is a name checked against <see cref="TorchGlobals"/> the moment GLOBAL, STACK_GLOBAL or INST
/// reads it, and calling an allowlisted global means running BigModel's own description of what that function
/// returns (a tensor view, an OrderedDict, a tuple...). Every length, count and depth is bounded by
/// <see cref="PyTorchLimits"/> and by the bytes actually present.
/// </summary>
internal sealed class RestrictedUnpickler
{
    /// <summary>CPython refuses to convert integers longer than this many decimal digits (sys.int_info.default_max_str_digits).</summary>
    private const int MaxIntegerDigits = 4300;

    /// <summary>Longest binary integer (LONG1/LONG4) accepted: far more than any real pickle needs.</summary>
    private const int MaxIntegerBytes = 4096;

    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    private readonly byte[] _data;
    private readonly PickleContext _context;
    private readonly PyTorchLimits _limits;
    private readonly Func<object?, long, TorchStorage> _persistentLoad;
    private readonly List<object?> _stack = [];
    private readonly List<int> _marks = [];
    private readonly Dictionary<long, object?> _memo = [];
    private int _pos;
    private int _opStart;
    private byte _op;
    private long _copied;

    public RestrictedUnpickler(byte[] data, PickleContext context, PyTorchLimits limits, Func<object?, long, TorchStorage> persistentLoad)
    {
        _data = data;
        _context = context;
        _limits = limits;
        _persistentLoad = persistentLoad;
    }

    /// <summary>Runs the pickle to its STOP opcode and returns the value it leaves.</summary>
    public object? Load()
    {
        long operations = 0;
        while (true)
        {
            if (_pos >= _data.Length)
                throw Malformed(_data.Length == 0 ? "the pickle is empty." : "the pickle ends without a STOP opcode: it is truncated.", _data.Length);
            _opStart = _pos;
            _op = _data[_pos++];
            if (++operations > _limits.MaxOperations)
                throw TooLarge($"the pickle runs more than {_limits.MaxOperations} opcodes.");
            if (_op == Stop) return Pop();
            Step();
        }
    }

    private void Step()
    {
        switch (_op)
        {
            // Structure
            case Mark:
                if (_marks.Count >= _limits.MaxMarkDepth) throw TooLarge($"more than {_limits.MaxMarkDepth} MARKs are open at once.");
                _marks.Add(_stack.Count);
                break;
            case PickleOpcodes.Pop:
                if (_stack.Count > FrameBase) _stack.RemoveAt(_stack.Count - 1);
                else if (_marks.Count > 0) _marks.RemoveAt(_marks.Count - 1);
                else throw Underflow();
                break;
            case PopMark:
                _ = PopMarkItems();
                break;
            case Dup:
                Push(Peek());
                break;
            case Proto:
            {
                int protocol = ReadByte();
                if (protocol > HighestProtocol)
                    throw _context.Error(BigModelErrorCode.PickleUnsupportedProtocol, $"pickle protocol {protocol} is not supported (0 to {HighestProtocol} are).", _opStart);
                break;
            }
            case Frame:
            {
                ulong length = ReadU64();
                if (length > (ulong)(_data.Length - _pos))
                    throw Malformed($"FRAME announces {length} bytes but only {_data.Length - _pos} remain.");
                break;
            }

            // Scalars
            case None: Push(null); break;
            case NewTrue: Push(true); break;
            case NewFalse: Push(false); break;
            case BinInt: Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break;
            case BinInt1: Push((long)ReadByte()); break;
            case BinInt2: Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break;
            case Long1: Push(DecodeLong(Take(ReadByte()))); break;
            case Long4:
            {
                int n = BinaryPrimitives.ReadInt32LittleEndian(Take(4));
                if (n < 0) throw Malformed($"LONG4 has a negative length ({n}).");
                if (n > MaxIntegerBytes) throw TooLarge($"an integer of {n} bytes exceeds the limit of {MaxIntegerBytes}.");
                Push(DecodeLong(Take(n)));
                break;
            }
            case Int: Push(ParseTextInt(ReadLine(), allowBool: true)); break;
            case Long:
            {
                var line = ReadLine();
                if (line.Length > 0 && line[^1] == (byte)'L') line = line[..^1];
                Push(ParseTextInt(line, allowBool: false));
                break;
            }
            case BinFloat: Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8))); break;
            case Float: Push(ParseTextFloat(ReadLine())); break;

            // Strings and bytes
            case BinUnicode: Push(Utf8(Take(ReadU32()))); break;
            case ShortBinUnicode: Push(Utf8(Take(ReadByte()))); break;
            case BinUnicode8: Push(Utf8(Take(ReadU64()))); break;
            case Unicode: Push(RawUnicodeEscape(ReadLine())); break;
            case BinString:
            {
                int n = BinaryPrimitives.ReadInt32LittleEndian(Take(4));
                if (n < 0) throw Malformed($"BINSTRING has a negative length ({n}).");
                Push(Utf8(Take(n)));
                break;
            }
            case ShortBinString: Push(Utf8(Take(ReadByte()))); break;
            case PickleOpcodes.String: Push(StringLiteral(ReadLine())); break;
            case BinBytes: Push(Take(ReadU32()).ToArray()); break;
            case ShortBinBytes: Push(Take(ReadByte()).ToArray()); break;
            case BinBytes8:
            case ByteArray8: Push(Take(ReadU64()).ToArray()); break;

            // Containers
            case EmptyTuple: Push(Array.Empty<object?>()); break;
            case PickleOpcodes.Tuple: Push(PopMarkItems()); break;
            case Tuple1: { var a = Pop(); Push(new[] { a }); break; }
            case Tuple2: { var b = Pop(); var a = Pop(); Push(new[] { a, b }); break; }
            case Tuple3: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new[] { a, b, c }); break; }
            case EmptyList: Push(new PyList()); break;
            case PickleOpcodes.List: Push(new PyList([.. PopMarkItems()])); break;
            case Append:
            {
                var item = Pop();
                ListTarget().Items.Add(item);
                break;
            }
            case Appends:
            {
                var items = PopMarkItems();
                ListTarget().Items.AddRange(items);
                break;
            }
            case EmptyDict: Push(new PyDict(PyDict.Flavor.Dict)); break;
            case PickleOpcodes.Dict:
            {
                var items = PopMarkItems();
                var dict = new PyDict(PyDict.Flavor.Dict);
                SetPairs(dict, items);
                Push(dict);
                break;
            }
            case SetItem:
            {
                var value = Pop();
                var key = Pop();
                SetPairs(DictTarget(), [key, value]);
                break;
            }
            case SetItems:
            {
                var items = PopMarkItems();
                SetPairs(DictTarget(), items);
                break;
            }
            case EmptySet: Push(new PySet(frozen: false)); break;
            case AddItems:
            {
                var items = PopMarkItems();
                if (Peek() is not PySet { Frozen: false } set) throw Malformed($"ADDITEMS needs a set below its MARK, not {TypeName(Peek())}.");
                set.Count += items.Length;
                break;
            }
            case FrozenSet: Push(new PySet(frozen: true) { Count = PopMarkItems().Length }); break;

            // Memo
            case Put: MemoPut(ParseMemoIndex(ReadLine())); break;
            case BinPut: MemoPut(ReadByte()); break;
            case LongBinPut: MemoPut(ReadU32()); break;
            case Memoize: MemoPut(_memo.Count); break;
            case Get: MemoGet(ParseMemoIndex(ReadLine())); break;
            case BinGet: MemoGet(ReadByte()); break;
            case LongBinGet: MemoGet(ReadU32()); break;

            // Everything that names or calls code: only allowlisted globals get this far.
            case Global:
            {
                var module = Utf8(ReadLine());
                var name = Utf8(ReadLine());
                Push(TorchGlobals.Resolve(module, name, _context, _opStart));
                break;
            }
            case StackGlobal:
            {
                var name = Pop();
                var module = Pop();
                if (module is not string m || name is not string n)
                    throw Malformed($"STACK_GLOBAL needs a module and a name as strings, got {TypeName(module)} and {TypeName(name)}.");
                Push(TorchGlobals.Resolve(m, n, _context, _opStart));
                break;
            }
            case Inst:
            {
                var module = Utf8(ReadLine());
                var name = Utf8(ReadLine());
                var global = TorchGlobals.Resolve(module, name, _context, _opStart);
                Push(Call(global, PopMarkItems(), "INST"));
                break;
            }
            case Obj:
            {
                var items = PopMarkItems();
                if (items.Length == 0) throw Malformed("OBJ needs a class after its MARK.");
                Push(Call(items[0], items[1..], "OBJ"));
                break;
            }
            case Reduce:
            {
                var args = Pop();
                var callable = Pop();
                if (args is not object?[] tuple) throw Malformed($"REDUCE needs an argument tuple, got {TypeName(args)}.");
                Push(Call(callable, tuple, "REDUCE"));
                break;
            }
            case NewObj:
            {
                var args = Pop();
                var cls = Pop();
                if (args is not object?[] tuple) throw Malformed($"NEWOBJ needs an argument tuple, got {TypeName(args)}.");
                Push(NewObject(cls, tuple, "NEWOBJ"));
                break;
            }
            case NewObjEx:
            {
                var kwargs = Pop();
                var args = Pop();
                var cls = Pop();
                if (args is not object?[] tuple) throw Malformed($"NEWOBJ_EX needs an argument tuple, got {TypeName(args)}.");
                if (kwargs is not PyDict { Count: 0 })
                    throw Malformed($"NEWOBJ_EX with keyword arguments ({TypeName(kwargs)}) is not written by torch.save.");
                Push(NewObject(cls, tuple, "NEWOBJ_EX"));
                break;
            }
            case PickleOpcodes.Build:
            {
                var state = Pop();
                Build(Peek(), state);
                break;
            }
            case BinPersId:
                Push(_persistentLoad(Pop(), _opStart));
                break;
            case PersId:
                throw Malformed("a text persistent id (PERSID) is not written by torch.save, whose storages use binary ids.");
            case Ext1:
            case Ext2:
            case Ext4:
            {
                long code = _op == Ext1 ? ReadByte() : _op == Ext2 ? BinaryPrimitives.ReadUInt16LittleEndian(Take(2)) : BinaryPrimitives.ReadInt32LittleEndian(Take(4));
                throw _context.Error(BigModelErrorCode.PickleForbiddenGlobal,
                    $"{Name(_op)} {code} names a global through Python's copyreg extension registry; such indirect globals are never allowed. Nothing was imported or executed.", _opStart);
            }
            case NextBuffer:
            case ReadOnlyBuffer:
                throw _context.Error(BigModelErrorCode.PickleInvalidOpcode,
                    $"opcode {Name(_op)} (0x{_op:x2}) refers to out-of-band buffers, which torch.save never writes.", _opStart);
            default:
                throw _context.Error(BigModelErrorCode.PickleInvalidOpcode, $"unknown pickle opcode 0x{_op:x2}.", _opStart);
        }
    }

    // ---- calls, instantiation and BUILD: what allowlisted globals are described to return ----

    private object? Call(object? callable, object?[] args, string how)
    {
        if (callable is not PyGlobal g)
            throw _context.Error(BigModelErrorCode.PickleForbiddenGlobal,
                $"{how} would call a value of type {TypeName(callable)}; only allowlisted torch functions and classes may be called.", _opStart);
        switch (g.Kind)
        {
            case TorchGlobalKind.OrderedDict:
            case TorchGlobalKind.Counter:
            {
                var dict = new PyDict(g.Kind == TorchGlobalKind.Counter ? PyDict.Flavor.Counter : PyDict.Flavor.OrderedDict);
                if (args.Length > 1) throw Malformed($"{g.FullName} takes at most one positional argument, got {args.Length}.");
                if (args.Length == 1) FillDict(dict, args[0], g.FullName);
                return dict;
            }
            case TorchGlobalKind.RebuildTensor:
                return RebuildTensor(g, args, 4, 4);
            case TorchGlobalKind.RebuildTensorV2:
                return RebuildTensor(g, args, 6, 7);
            case TorchGlobalKind.RebuildTensorV3:
                return RebuildTensor(g, args, 7, 8);
            case TorchGlobalKind.RebuildParameter:
                ExpectArgs(g, args, 3, 3);
                return ExpectTensor(args[0], g.FullName);
            case TorchGlobalKind.RebuildParameterWithState:
            case TorchGlobalKind.RebuildDeviceTensorFromCpu:
                ExpectArgs(g, args, 4, 4);
                return ExpectTensor(args[0], g.FullName);
            case TorchGlobalKind.RebuildFromTypeV2:
            {
                ExpectArgs(g, args, 4, 4);
                if (args[0] is not PyGlobal inner || !IsTensorRebuild(inner.Kind))
                    throw Invalid($"{g.FullName} must wrap a tensor rebuild function, got {TypeName(args[0])}.");
                if (args[1] is not PyGlobal { Kind: TorchGlobalKind.TensorClass or TorchGlobalKind.Parameter })
                    throw Invalid($"{g.FullName} may only rebuild torch.Tensor or torch.nn.Parameter, got {TypeName(args[1])}.");
                if (args[2] is not object?[] innerArgs)
                    throw Invalid($"{g.FullName} needs an argument tuple for {inner.FullName}, got {TypeName(args[2])}.");
                return ExpectTensor(Call(inner, innerArgs, g.FullName), g.FullName);
            }
            case TorchGlobalKind.Parameter:
                if (args.Length is < 1 or > 2) throw Invalid($"torch.nn.Parameter takes its data and requires_grad, got {args.Length} arguments.");
                return ExpectTensor(args[0], g.FullName);
            case TorchGlobalKind.Size:
                if (args.Length > 1) throw Malformed($"torch.Size takes at most one argument, got {args.Length}.");
                return args.Length == 0 ? Array.Empty<object?>() : SizeFrom(args[0]);
            case TorchGlobalKind.Device:
                return new PyOpaque("torch.device");
            case TorchGlobalKind.GetLayout:
                return new PyOpaque("torch.layout");
            case TorchGlobalKind.Complex:
                return new PyOpaque("complex");
            case TorchGlobalKind.Set:
            {
                if (args.Length > 1) throw Malformed($"set takes at most one argument, got {args.Length}.");
                return new PySet(frozen: false) { Count = args.Length == 0 ? 0 : Iterable(args[0], "set").Count };
            }
            case TorchGlobalKind.CodecsEncode:
                if (args.Length is < 1 or > 3) throw Malformed($"_codecs.encode takes a string and an encoding, got {args.Length} arguments.");
                return Encode(args[0], args.Length > 1 ? args[1] : "utf-8", "_codecs.encode");
            case TorchGlobalKind.ByteArray:
                return args.Length switch
                {
                    0 => Array.Empty<byte>(),
                    1 when args[0] is byte[] bytes => CopyBytes(bytes),
                    2 or 3 => Encode(args[0], args[1], "bytearray"),
                    // bytearray(n) would allocate n bytes chosen by the file.
                    _ => throw Malformed($"bytearray is only accepted with bytes or a string and its encoding, got {DescribeArgs(args)}."),
                };
            default:
                throw _context.Error(BigModelErrorCode.PickleForbiddenGlobal,
                    $"{how} would call {g.FullName}, which a weights file may only reference, never call.", _opStart);
        }
    }

    private object? NewObject(object? cls, object?[] args, string how)
    {
        if (cls is not PyGlobal g)
            throw _context.Error(BigModelErrorCode.PickleForbiddenGlobal,
                $"{how} would instantiate a value of type {TypeName(cls)}; only allowlisted classes may be instantiated.", _opStart);
        return g.Kind switch
        {
            // cls.__new__(cls, *args): containers start empty and are filled by later opcodes.
            TorchGlobalKind.OrderedDict => new PyDict(PyDict.Flavor.OrderedDict),
            TorchGlobalKind.Counter => new PyDict(PyDict.Flavor.Counter),
            TorchGlobalKind.Set => new PySet(frozen: false),
            TorchGlobalKind.ByteArray => Array.Empty<byte>(),
            TorchGlobalKind.Complex => new PyOpaque("complex"),
            TorchGlobalKind.Parameter or TorchGlobalKind.Size => Call(g, args, how),
            _ => throw _context.Error(BigModelErrorCode.PickleForbiddenGlobal,
                $"{how} would instantiate {g.FullName}, which a weights file may not create that way.", _opStart),
        };
    }

    private void Build(object? target, object? state)
    {
        switch (target)
        {
            case PyDict:
                // OrderedDict state is its instance __dict__ (e.g. a state_dict's _metadata); it holds no entries.
                if (state is not (PyDict or null))
                    throw Malformed($"BUILD on a dict needs a dict of attributes, got {TypeName(state)}.");
                break;
            case PyGlobal g:
                throw _context.Error(BigModelErrorCode.PickleForbiddenGlobal, $"BUILD would set attributes on {g.FullName}; that is never allowed.", _opStart);
            case TorchTensor:
                throw Malformed("BUILD on a tensor (the legacy set_ state) is not written by torch.save and is refused.");
            default:
                throw Malformed($"BUILD on a value of type {TypeName(target)} is not allowed.");
        }
    }

    private TorchTensor RebuildTensor(PyGlobal g, object?[] args, int min, int max)
    {
        ExpectArgs(g, args, min, max);
        if (args[0] is not TorchStorage storage)
            throw Invalid($"{g.FullName} needs a storage (a persistent id) as its first argument, got {TypeName(args[0])}.");
        if (args[1] is not long offset || offset < 0)
            throw Invalid($"{g.FullName} needs a non-negative storage offset, got {Describe(args[1])}.");
        var shape = Dims(args[2], "size", g.FullName);
        var strides = Dims(args[3], "stride", g.FullName);
        if (shape.Length != strides.Length)
            throw Invalid($"{g.FullName} has {shape.Length} sizes but {strides.Length} strides.");
        DType dtype;
        if (g.Kind == TorchGlobalKind.RebuildTensorV3)
        {
            if (args[6] is not PyGlobal { Kind: TorchGlobalKind.DType } dt)
                throw Invalid($"{g.FullName} needs a dtype as its seventh argument, got {TypeName(args[6])}.");
            dtype = dt.DType ?? throw _context.Error(BigModelErrorCode.PickleUnsupportedTensorType, $"a tensor of dtype {dt.FullName}: {dt.Unsupported}.", _opStart);
        }
        else
        {
            // A typed storage gives the tensor its dtype; an untyped one is bytes.
            dtype = storage.ElementType ?? DType.U8;
        }
        return new TorchTensor(storage, dtype, offset, shape, strides, g.FullName);
    }

    private long[] Dims(object? value, string what, string function)
    {
        IReadOnlyList<object?> items = value switch
        {
            object?[] tuple => tuple,
            PyList list => list.Items,
            _ => throw Invalid($"{function} needs a tuple as its {what}, got {TypeName(value)}."),
        };
        if (items.Count > _limits.MaxRank)
            throw Invalid($"{function} has {items.Count} dimensions; at most {_limits.MaxRank} are allowed.");
        var dims = new long[items.Count];
        for (int i = 0; i < dims.Length; i++)
        {
            if (items[i] is not long d || d < 0)
                throw Invalid($"{function} has {what} {Describe(items[i])} in dimension {i}; only non-negative integers are allowed.");
            dims[i] = d;
        }
        return dims;
    }

    private object?[] SizeFrom(object? value)
    {
        var items = Iterable(value, "torch.Size");
        if (items.Count > _limits.MaxRank)
            throw Invalid($"torch.Size of {items.Count} dimensions; at most {_limits.MaxRank} are allowed.");
        var result = new object?[items.Count];
        for (int i = 0; i < result.Length; i++)
        {
            if (items[i] is not long) throw Invalid($"torch.Size holds {Describe(items[i])}; only integers are allowed.");
            result[i] = items[i];
        }
        return result;
    }

    private void FillDict(PyDict dict, object? source, string function)
    {
        if (source is PyDict other)
        {
            Count(other.Count);
            for (int i = 0; i < other.Count; i++)
            {
                ChargeKey(other.KeyAt(i));
                if (!dict.Set(other.KeyAt(i), other.ValueAt(i))) throw Malformed($"{function} got an unhashable key.");
            }
            return;
        }
        var pairs = Iterable(source, function);
        Count(pairs.Count);
        foreach (var pair in pairs)
        {
            if (pair is not object?[] { Length: 2 } kv)
                throw Malformed($"{function} needs (key, value) pairs, got {TypeName(pair)}.");
            ChargeKey(kv[0]);
            if (!dict.Set(kv[0], kv[1])) throw Malformed($"{function} got an unhashable key ({TypeName(kv[0])}).");
        }
    }

    private IReadOnlyList<object?> Iterable(object? value, string function) => value switch
    {
        object?[] tuple => tuple,
        PyList list => list.Items,
        _ => throw Malformed($"{function} needs a list or tuple here, got {TypeName(value)}."),
    };

    private byte[] Encode(object? text, object? encoding, string function)
    {
        if (text is not string s) throw Malformed($"{function} needs a string to encode, got {TypeName(text)}.");
        Count(s.Length);
        var name = encoding switch
        {
            string e => e.ToLowerInvariant().Replace('_', '-'),
            _ => throw Malformed($"{function} needs an encoding name, got {TypeName(encoding)}."),
        };
        switch (name)
        {
            case "latin1":
            case "latin-1":
            case "iso-8859-1":
            case "iso8859-1":
            {
                var bytes = new byte[s.Length];
                for (int i = 0; i < s.Length; i++)
                {
                    if (s[i] > 0xFF) throw Malformed($"{function}: character U+{(int)s[i]:X4} cannot be encoded as latin-1.");
                    bytes[i] = (byte)s[i];
                }
                return bytes;
            }
            case "utf-8":
            case "utf8":
                try { return StrictUtf8.GetBytes(s); }
                catch (EncoderFallbackException) { throw Malformed($"{function}: the string cannot be encoded as UTF-8."); }
            case "ascii":
                foreach (var c in s)
                    if (c > 0x7F) throw Malformed($"{function}: character U+{(int)c:X4} cannot be encoded as ASCII.");
                return Encoding.ASCII.GetBytes(s);
            default:
                throw Malformed($"{function} with encoding '{ZipArchiveIndex.Show(name)}' is not supported.");
        }
    }

    private byte[] CopyBytes(byte[] bytes)
    {
        Count(bytes.Length);
        return bytes.ToArray();
    }

    private static bool IsTensorRebuild(TorchGlobalKind kind) => kind is TorchGlobalKind.RebuildTensor or TorchGlobalKind.RebuildTensorV2
        or TorchGlobalKind.RebuildTensorV3 or TorchGlobalKind.RebuildParameter or TorchGlobalKind.RebuildParameterWithState
        or TorchGlobalKind.RebuildDeviceTensorFromCpu;

    private TorchTensor ExpectTensor(object? value, string function) =>
        value as TorchTensor ?? throw Invalid($"{function} needs a tensor, got {TypeName(value)}.");

    private void ExpectArgs(PyGlobal g, object?[] args, int min, int max)
    {
        if (args.Length < min || args.Length > max)
            throw Invalid($"{g.FullName} takes {(min == max ? $"{min}" : $"{min} to {max}")} arguments, got {args.Length}.");
    }

    // ---- stack, marks and memo ----

    private int FrameBase => _marks.Count == 0 ? 0 : _marks[^1];

    private void Push(object? value)
    {
        if (_stack.Count >= _limits.MaxStackItems) throw TooLarge($"more than {_limits.MaxStackItems} values are on the pickle stack.");
        _stack.Add(value);
    }

    private object? Pop()
    {
        if (_stack.Count <= FrameBase) throw Underflow();
        var value = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return value;
    }

    private object? Peek()
    {
        if (_stack.Count <= FrameBase) throw Underflow();
        return _stack[^1];
    }

    private object?[] PopMarkItems()
    {
        if (_marks.Count == 0) throw Malformed($"{Name(_op)} needs a MARK, but none is open.");
        int start = _marks[^1];
        _marks.RemoveAt(_marks.Count - 1);
        int n = _stack.Count - start;
        Count(n);
        var items = new object?[n];
        _stack.CopyTo(start, items, 0, n);
        _stack.RemoveRange(start, n);
        return items;
    }

    private void Count(long items)
    {
        _copied += items;
        if (_copied > _limits.MaxCopiedItems) throw TooLarge($"the pickle copies more than {_limits.MaxCopiedItems} container items.");
    }

    private PyList ListTarget() => Peek() as PyList ?? throw Malformed($"{Name(_op)} needs a list, not {TypeName(Peek())}.");

    private PyDict DictTarget() => Peek() as PyDict ?? throw Malformed($"{Name(_op)} needs a dict, not {TypeName(Peek())}.");

    private void SetPairs(PyDict dict, object?[] items)
    {
        if (items.Length % 2 != 0) throw Malformed($"{Name(_op)} has an odd number of items ({items.Length}) for key/value pairs.");
        for (int i = 0; i < items.Length; i += 2)
        {
            ChargeKey(items[i]);
            if (!dict.Set(items[i], items[i + 1])) throw Malformed($"{Name(_op)} uses an unhashable {TypeName(items[i])} as a dict key.");
        }
    }

    /// <summary>
    /// Hashing a string key costs its length, and one memoised string can be used as a key any number of times:
    /// count that work against <see cref="PyTorchLimits.MaxCopiedItems"/> so it stays bounded.
    /// </summary>
    private void ChargeKey(object? key)
    {
        if (key is string s) Count(s.Length);
    }

    private void MemoPut(long index)
    {
        var value = Peek();
        if (!_memo.ContainsKey(index) && _memo.Count >= _limits.MaxMemoEntries)
            throw TooLarge($"the pickle memoises more than {_limits.MaxMemoEntries} values.");
        _memo[index] = value;
    }

    private void MemoGet(long index)
    {
        if (!_memo.TryGetValue(index, out var value)) throw Malformed($"{Name(_op)} reads memo slot {index}, which was never stored.");
        Push(value);
    }

    // ---- reading operands ----

    private byte ReadByte()
    {
        if (_pos >= _data.Length) throw Truncated();
        return _data[_pos++];
    }

    private long ReadU32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    private ulong ReadU64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    private ReadOnlySpan<byte> Take(long length) => Take((ulong)length);

    private ReadOnlySpan<byte> Take(ulong length)
    {
        int remaining = _data.Length - _pos;
        if (length > (ulong)remaining)
        {
            if (length > (ulong)_limits.MaxStringBytes)
                throw TooLarge($"{Name(_op)} claims {length} bytes; the limit is {_limits.MaxStringBytes} and only {remaining} remain.");
            throw Malformed($"{Name(_op)} claims {length} bytes but only {remaining} remain: the pickle is truncated.");
        }
        if (length > (ulong)_limits.MaxStringBytes)
            throw TooLarge($"{Name(_op)} carries {length} bytes; the limit is {_limits.MaxStringBytes}.");
        var span = _data.AsSpan(_pos, (int)length);
        _pos += (int)length;
        return span;
    }

    private ReadOnlySpan<byte> ReadLine()
    {
        int limit = (int)Math.Min(_data.Length, (long)_pos + _limits.MaxStringBytes + 1);
        int end = _data.AsSpan(_pos, limit - _pos).IndexOf((byte)'\n');
        if (end < 0)
        {
            if (limit < _data.Length) throw TooLarge($"{Name(_op)} has a text operand longer than {_limits.MaxStringBytes} bytes.");
            throw Malformed($"{Name(_op)} has a text operand without its end of line: the pickle is truncated.");
        }
        var line = _data.AsSpan(_pos, end);
        _pos += end + 1;
        return line;
    }

    private string Utf8(ReadOnlySpan<byte> bytes)
    {
        try { return StrictUtf8.GetString(bytes); }
        catch (DecoderFallbackException) { throw Malformed($"{Name(_op)} holds text that is not valid UTF-8."); }
    }

    private object DecodeLong(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length == 0) return 0L;
        if (bytes.Length <= 8)
        {
            long value = 0;
            for (int i = bytes.Length - 1; i >= 0; i--) value = (value << 8) | bytes[i];
            int shift = 64 - 8 * bytes.Length;
            return shift == 0 ? value : (value << shift) >> shift;
        }
        var big = new BigInteger(bytes, isUnsigned: false, isBigEndian: false);
        return big >= long.MinValue && big <= long.MaxValue ? (long)big : big;
    }

    private object ParseTextInt(ReadOnlySpan<byte> line, bool allowBool)
    {
        if (allowBool && line.SequenceEqual("00"u8)) return false;
        if (allowBool && line.SequenceEqual("01"u8)) return true;
        var text = Ascii(line);
        if (text.Length > MaxIntegerDigits + 1) throw TooLarge($"an integer of {text.Length} digits exceeds the limit of {MaxIntegerDigits}.");
        if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l)) return l;
        if (BigInteger.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var big)) return big;
        throw Malformed($"{Name(_op)} operand '{ZipArchiveIndex.Show(text)}' is not an integer.");
    }

    private long ParseMemoIndex(ReadOnlySpan<byte> line)
    {
        var text = Ascii(line);
        if (text.Length > 20 || !long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var index))
            throw Malformed($"{Name(_op)} operand '{ZipArchiveIndex.Show(text)}' is not a memo index.");
        if (index < 0) throw Malformed($"{Name(_op)} uses a negative memo index ({index}).");
        return index;
    }

    private double ParseTextFloat(ReadOnlySpan<byte> line)
    {
        var text = Ascii(line).Trim();
        switch (text.ToLowerInvariant())
        {
            case "inf": case "+inf": case "infinity": return double.PositiveInfinity;
            case "-inf": case "-infinity": return double.NegativeInfinity;
            case "nan": case "+nan": case "-nan": return double.NaN;
        }
        if (text.Length <= 400 && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d)) return d;
        throw Malformed($"FLOAT operand '{ZipArchiveIndex.Show(text)}' is not a number.");
    }

    private string Ascii(ReadOnlySpan<byte> bytes)
    {
        foreach (var b in bytes)
            if (b > 0x7F) throw Malformed($"{Name(_op)} has a non-ASCII text operand.");
        return Encoding.ASCII.GetString(bytes);
    }

    private string StringLiteral(ReadOnlySpan<byte> line) =>
        PickleText.TryDecodeStringLiteral(line, out var value, out var error) ? value : throw Malformed($"STRING operand {error}.");

    private string RawUnicodeEscape(ReadOnlySpan<byte> line) =>
        PickleText.TryDecodeRawUnicodeEscape(line, out var value, out var error) ? value : throw Malformed($"UNICODE operand {error}.");

    // ---- errors and descriptions ----

    private BigModelException Malformed(string message, long? at = null) =>
        _context.Error(BigModelErrorCode.PickleMalformed, message, at ?? _opStart);

    private BigModelException Invalid(string message) => _context.Error(BigModelErrorCode.PickleInvalidTensor, message, _opStart);

    private BigModelException TooLarge(string message) => _context.Error(BigModelErrorCode.PickleTooLarge, message, _opStart);

    private BigModelException Underflow() => Malformed($"{Name(_op)} needs a value but the stack{(_marks.Count > 0 ? " above the last MARK" : "")} is empty.");

    private BigModelException Truncated() => Malformed($"the pickle ends inside the operand of {Name(_op)}: it is truncated.");

    private static string DescribeArgs(object?[] args) => "(" + string.Join(", ", args.Select(TypeName)) + ")";

    private static string Describe(object? value) => value switch
    {
        long l => l.ToString(CultureInfo.InvariantCulture),
        BigInteger => "an integer out of range",
        _ => TypeName(value),
    };

    /// <summary>A short, non-recursive name for a value's type, as Python would print it.</summary>
    public static string TypeName(object? value) => value switch
    {
        null => "None",
        bool => "bool",
        long or BigInteger => "int",
        double => "float",
        string => "str",
        byte[] => "bytes",
        object?[] => "tuple",
        PyList => "list",
        PyDict d => d.TypeName,
        PySet s => s.Frozen ? "frozenset" : "set",
        PyGlobal g => g.FullName,
        PyOpaque o => o.TypeName,
        TorchStorage s => s.TypeName,
        TorchTensor => "torch.Tensor",
        _ => value.GetType().Name,
    };
}
