using System.Buffers.Binary;
using BigModel.Errors;

namespace BigModel.Fixtures.Onnx;

/// <summary>
/// The parts of an ONNX model a weight converter needs: the graph's nodes in order and its initializers
/// (constant tensors, including those of <c>Constant</c> nodes), read straight from the protobuf wire format.
/// </summary>
public sealed class OnnxModel
{
    // Field numbers from onnx.proto.
    private const int ModelGraph = 7;
    private const int ModelProducerName = 2;
    private const int ModelIrVersion = 1;
    private const int GraphNode = 1;
    private const int GraphNameField = 2;
    private const int GraphInitializer = 5;
    private const int GraphInput = 11;
    private const int GraphOutput = 12;
    private const int NodeInput = 1;
    private const int NodeOutput = 2;
    private const int NodeName = 3;
    private const int NodeOpType = 4;
    private const int NodeAttribute = 5;
    private const int AttributeName = 1;
    private const int AttributeFloat = 2;
    private const int AttributeInt = 3;
    private const int AttributeTensor = 5;
    private const int ValueInfoName = 1;
    private const int TensorDims = 1;
    private const int TensorDataType = 2;
    private const int TensorSegment = 3;
    private const int TensorFloatData = 4;
    private const int TensorInt32Data = 5;
    private const int TensorInt64Data = 7;
    private const int TensorName = 8;
    private const int TensorRawData = 9;
    private const int TensorDoubleData = 10;
    private const int TensorExternalData = 13;
    private const int TensorDataLocation = 14;

    /// <summary>Tensors of more dimensions than this are not real model weights.</summary>
    private const int MaxRank = 16;

    private readonly Dictionary<string, OnnxTensor> _initializers;

    private OnnxModel(long irVersion, string producer, string graphName, List<OnnxNode> nodes, List<OnnxTensor> initializers,
        List<string> inputs, List<string> outputs)
    {
        IrVersion = irVersion;
        Producer = producer;
        GraphName = graphName;
        Nodes = nodes;
        Initializers = initializers;
        Inputs = inputs;
        Outputs = outputs;
        _initializers = new Dictionary<string, OnnxTensor>(StringComparer.Ordinal);
        foreach (var t in initializers)
            if (!_initializers.TryAdd(t.Name, t))
                throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "two initializers share one name.", tensor: t.Name);
    }

    public long IrVersion { get; }
    public string Producer { get; }
    public string GraphName { get; }

    /// <summary>Nodes in graph order (ONNX requires topological order).</summary>
    public IReadOnlyList<OnnxNode> Nodes { get; }

    /// <summary>Initializers in file order.</summary>
    public IReadOnlyList<OnnxTensor> Initializers { get; }

    /// <summary>Names of the graph inputs that are not initializers.</summary>
    public IReadOnlyList<string> Inputs { get; }

    public IReadOnlyList<string> Outputs { get; }

    public OnnxTensor? Initializer(string name) => _initializers.GetValueOrDefault(name);

    public static OnnxModel Load(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException e)
        {
            throw new BigModelException(BigModelErrorCode.PathNotFound, "the ONNX model does not exist.", path, inner: e);
        }
        catch (IOException e)
        {
            throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, path, inner: e);
        }
        return Parse(bytes, path);
    }

    /// <summary>Parses a serialized <c>ModelProto</c>. Tensor data stays a view into <paramref name="bytes"/>.</summary>
    public static OnnxModel Parse(ReadOnlyMemory<byte> bytes, string? file = null)
    {
        var reader = new ProtoReader(bytes, 0, file);
        long ir = 0;
        string producer = "";
        ProtoReader? graph = null;
        while (reader.TryReadTag(out int field, out var wire))
        {
            if (field == ModelIrVersion && wire == WireType.Varint) ir = reader.ReadInt64();
            else if (field == ModelProducerName && wire == WireType.LengthDelimited) producer = reader.ReadString();
            else if (field == ModelGraph && wire == WireType.LengthDelimited) graph = reader.ReadMessage();
            else reader.Skip(wire);
        }
        if (graph is not ProtoReader g)
            throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "the file holds no ONNX graph (ModelProto.graph is missing).", file);
        return ParseGraph(g, ir, producer, file);
    }

    private static OnnxModel ParseGraph(ProtoReader reader, long ir, string producer, string? file)
    {
        var nodes = new List<OnnxNode>();
        var initializers = new List<OnnxTensor>();
        var inputs = new List<string>();
        var outputs = new List<string>();
        string name = "";
        while (reader.TryReadTag(out int field, out var wire))
        {
            if (wire != WireType.LengthDelimited)
            {
                reader.Skip(wire);
                continue;
            }
            switch (field)
            {
                case GraphNode:
                {
                    var node = ParseNode(reader.ReadMessage(), file, out var constant);
                    nodes.Add(node);
                    if (constant is not null) initializers.Add(constant);
                    break;
                }
                case GraphNameField: name = reader.ReadString(); break;
                case GraphInitializer: initializers.Add(ParseTensor(reader.ReadMessage(), file, null)); break;
                case GraphInput: inputs.Add(ValueInfoNameOf(reader.ReadMessage())); break;
                case GraphOutput: outputs.Add(ValueInfoNameOf(reader.ReadMessage())); break;
                default: reader.Skip(wire); break;
            }
        }
        var initNames = initializers.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        inputs.RemoveAll(initNames.Contains);
        return new OnnxModel(ir, producer, name, nodes, initializers, inputs, outputs);
    }

    private static string ValueInfoNameOf(ProtoReader reader)
    {
        string name = "";
        while (reader.TryReadTag(out int field, out var wire))
        {
            if (field == ValueInfoName && wire == WireType.LengthDelimited) name = reader.ReadString();
            else reader.Skip(wire);
        }
        return name;
    }

    private static OnnxNode ParseNode(ProtoReader reader, string? file, out OnnxTensor? constant)
    {
        var inputs = new List<string>();
        var outputs = new List<string>();
        string name = "", op = "";
        OnnxTensor? value = null;
        var attributes = new Dictionary<string, double>(StringComparer.Ordinal);
        while (reader.TryReadTag(out int field, out var wire))
        {
            if (wire != WireType.LengthDelimited)
            {
                reader.Skip(wire);
                continue;
            }
            switch (field)
            {
                case NodeInput: inputs.Add(reader.ReadString()); break;
                case NodeOutput: outputs.Add(reader.ReadString()); break;
                case NodeName: name = reader.ReadString(); break;
                case NodeOpType: op = reader.ReadString(); break;
                case NodeAttribute:
                {
                    var attribute = reader.ReadMessage();
                    string attributeName = "";
                    ProtoReader? tensor = null;
                    double? number = null;
                    while (attribute.TryReadTag(out int f, out var w))
                    {
                        if (f == AttributeName && w == WireType.LengthDelimited) attributeName = attribute.ReadString();
                        else if (f == AttributeTensor && w == WireType.LengthDelimited) tensor = attribute.ReadMessage();
                        else if (f == AttributeInt && w == WireType.Varint) number = attribute.ReadInt64();
                        else if (f == AttributeFloat && w == WireType.Fixed32) number = BitConverter.UInt32BitsToSingle(attribute.ReadFixed32());
                        else attribute.Skip(w);
                    }
                    if (attributeName == "value" && tensor is ProtoReader t) value = ParseTensor(t, file, null);
                    if (number is double n) attributes[attributeName] = n;
                    break;
                }
                default: reader.Skip(wire); break;
            }
        }
        // A Constant node is an initializer under its output's name.
        constant = op == "Constant" && value is not null && outputs.Count == 1
            ? new OnnxTensor(outputs[0], value.DataType, [.. value.Dims], value.Data, value.FileOffset)
            : null;
        return new OnnxNode(name, op, inputs, outputs, attributes);
    }

    private static OnnxTensor ParseTensor(ProtoReader reader, string? file, string? nameOverride)
    {
        long start = reader.FileOffset;
        var dims = new List<long>();
        int dataType = 0;
        string name = "";
        ReadOnlyMemory<byte>? raw = null;
        ReadOnlyMemory<byte>? packedFloats = null;
        List<uint>? looseFloats = null;
        List<long>? integers = null;
        List<ulong>? looseDoubles = null;
        ReadOnlyMemory<byte>? packedDoubles = null;
        bool external = false;
        while (reader.TryReadTag(out int field, out var wire))
        {
            switch (field)
            {
                case TensorDims when wire == WireType.Varint:
                    AddDim(dims, reader.ReadInt64(), reader, file);
                    break;
                case TensorDims when wire == WireType.LengthDelimited:
                {
                    var packed = reader.ReadMessage();
                    while (!packed.AtEnd) AddDim(dims, packed.ReadInt64(), reader, file);
                    break;
                }
                case TensorDataType when wire == WireType.Varint: dataType = reader.ReadInt32(); break;
                case TensorName when wire == WireType.LengthDelimited: name = reader.ReadString(); break;
                case TensorRawData when wire == WireType.LengthDelimited: raw = reader.ReadLengthDelimited().Bytes; break;
                case TensorFloatData when wire == WireType.LengthDelimited: packedFloats = reader.ReadLengthDelimited().Bytes; break;
                case TensorFloatData when wire == WireType.Fixed32: (looseFloats ??= []).Add(reader.ReadFixed32()); break;
                case TensorDoubleData when wire == WireType.LengthDelimited: packedDoubles = reader.ReadLengthDelimited().Bytes; break;
                case TensorDoubleData when wire == WireType.Fixed64: (looseDoubles ??= []).Add(reader.ReadFixed64()); break;
                case TensorInt32Data or TensorInt64Data when wire == WireType.Varint: (integers ??= []).Add(reader.ReadInt64()); break;
                case TensorInt32Data or TensorInt64Data when wire == WireType.LengthDelimited:
                {
                    var packed = reader.ReadMessage();
                    integers ??= [];
                    while (!packed.AtEnd) integers.Add(packed.ReadInt64());
                    break;
                }
                case TensorDataLocation when wire == WireType.Varint: external |= reader.ReadInt64() == 1; break;
                case TensorExternalData: external = true; reader.Skip(wire); break;
                case TensorSegment:
                    throw reader.Malformed("segmented tensors are not supported", start);
                default: reader.Skip(wire); break;
            }
        }
        name = nameOverride ?? name;
        if (external)
            throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "the tensor's data is stored in an external file, which is not supported.", file, start, name);
        var type = (OnnxDataType)dataType;
        ReadOnlyMemory<byte> data;
        if (raw is ReadOnlyMemory<byte> r) data = r;
        else if (packedFloats is ReadOnlyMemory<byte> pf) data = pf;
        else if (looseFloats is not null) data = ToBytes(looseFloats);
        else if (packedDoubles is ReadOnlyMemory<byte> pd) data = pd;
        else if (looseDoubles is not null) data = ToBytes(looseDoubles);
        else if (integers is not null) data = IntegersToBytes(integers, type, file, start, name);
        else data = ReadOnlyMemory<byte>.Empty;

        // No real tensor has more than 2^40 elements. Checking before each multiplication keeps the product exact: a
        // running product up to 2^40 times a dimension below 2^31 could otherwise pass 2^63 and wrap.
        const long maxElements = 1L << 40;
        long elements = 1;
        foreach (var d in dims)
        {
            if (d != 0 && elements > maxElements / d)
                throw new BigModelException(BigModelErrorCode.UnsupportedFormat, $"the tensor's dimensions [{string.Join(", ", dims)}] are implausibly large.", file, start, name);
            elements *= d;
        }
        var tensor = new OnnxTensor(name, type, [.. dims], data, start);
        int size = type.ElementSize();
        if (size > 0 && data.Length != 0 && (ulong)data.Length != checked((ulong)tensor.ElementCount * (ulong)size))
            throw new BigModelException(BigModelErrorCode.UnsupportedFormat,
                $"the tensor holds {data.Length} bytes but {type} [{string.Join(", ", dims)}] needs {tensor.ElementCount * size}.", file, start, name);
        return tensor;
    }

    private static void AddDim(List<long> dims, long d, ProtoReader reader, string? file)
    {
        if (d < 0 || d > int.MaxValue) throw reader.Malformed($"dimension {d} is out of range", reader.FileOffset);
        if (dims.Count >= MaxRank) throw reader.Malformed($"a tensor has more than {MaxRank} dimensions", reader.FileOffset);
        dims.Add(d);
    }

    private static byte[] ToBytes(List<uint> values)
    {
        var bytes = new byte[values.Count * 4];
        for (int i = 0; i < values.Count; i++) BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }

    private static byte[] ToBytes(List<ulong> values)
    {
        var bytes = new byte[values.Count * 8];
        for (int i = 0; i < values.Count; i++) BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), values[i]);
        return bytes;
    }

    private static byte[] IntegersToBytes(List<long> values, OnnxDataType type, string? file, long offset, string name)
    {
        int size = type.ElementSize();
        if (size == 0)
            throw new BigModelException(BigModelErrorCode.UnsupportedFormat, $"integer data for a {type} tensor.", file, offset, name);
        var bytes = new byte[values.Count * size];
        for (int i = 0; i < values.Count; i++)
        {
            var span = bytes.AsSpan(i * size, size);
            switch (size)
            {
                case 1: span[0] = unchecked((byte)values[i]); break;
                case 2: BinaryPrimitives.WriteInt16LittleEndian(span, unchecked((short)values[i])); break;
                case 4: BinaryPrimitives.WriteInt32LittleEndian(span, unchecked((int)values[i])); break;
                default: BinaryPrimitives.WriteInt64LittleEndian(span, values[i]); break;
            }
        }
        return bytes;
    }
}
