namespace BigModel.Fixtures.Onnx;

/// <summary>
/// An ONNX <c>NodeProto</c>: one operator with its named inputs and outputs (empty names are absent optional
/// inputs) and its scalar int/float attributes (e.g. Gemm's transB).
/// </summary>
public sealed record OnnxNode(string Name, string OpType, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs,
    IReadOnlyDictionary<string, double> Attributes)
{
    public double? Attribute(string name) => Attributes.TryGetValue(name, out var v) ? v : null;
}
