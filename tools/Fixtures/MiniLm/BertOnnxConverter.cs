using System.Globalization;
using System.Text.RegularExpressions;
using BigModel.Errors;
using BigModel.Fixtures.Onnx;

namespace BigModel.Fixtures.MiniLm;

/// <summary>
/// Turns the initializers of a PyTorch-exported BERT ONNX graph back into the tensors of a transformers
/// <c>BertModel</c> checkpoint. The exporter keeps the module names of embeddings, LayerNorms and biases, but stores
/// each Linear weight pre-transposed ([in, out]) under a generated name, feeding a MatMul whose output is added to
/// the bias; the graph wiring is what names those weights again.
/// </summary>
public static partial class BertOnnxConverter
{
    [GeneratedRegex(@"^encoder\.layer\.(\d+)\.")]
    private static partial Regex LayerPattern();

    /// <summary>The tensors of the checkpoint in ONNX initializer order, and the config values they imply.</summary>
    public static (IReadOnlyList<ConvertedTensor> Tensors, BertDimensions Dimensions) Convert(OnnxModel model, string? file = null)
    {
        var consumers = new Dictionary<string, List<OnnxNode>>(StringComparer.Ordinal);
        foreach (var node in model.Nodes)
            foreach (var input in node.Inputs)
                if (input.Length > 0) (consumers.TryGetValue(input, out var list) ? list : consumers[input] = []).Add(node);

        // Linear layers: which initializers are weights, under which name, in which layout.
        var linear = new Dictionary<string, (string Name, bool Transposed)>(StringComparer.Ordinal);
        foreach (var node in model.Nodes)
        {
            if (node.OpType is not ("MatMul" or "Gemm") || node.Inputs.Count < 2 || node.Outputs.Count < 1) continue;
            var weight = model.Initializer(node.Inputs[1]);
            if (weight is null || weight.Dims.Count != 2 || weight.DataType != OnnxDataType.Float) continue;
            string? bias = null;
            if (node.OpType == "Gemm")
            {
                if (node.Attribute("transA") is double ta && ta != 0) continue;
                if (node.Inputs.Count > 2 && model.Initializer(node.Inputs[2]) is { } b) bias = b.Name;
            }
            else if (consumers.TryGetValue(node.Outputs[0], out var next))
            {
                foreach (var add in next.Where(n => n.OpType == "Add"))
                {
                    var other = add.Inputs.FirstOrDefault(i => i != node.Outputs[0]);
                    if (other is not null && model.Initializer(other) is { Dims.Count: 1 } b) bias = b.Name;
                }
            }
            bool transposed = node.OpType == "MatMul" || node.Attribute("transB") is not (double tb and not 0);
            string name;
            if (weight.Name.EndsWith(".weight", StringComparison.Ordinal)) name = weight.Name;
            else if (bias is not null && bias.EndsWith(".bias", StringComparison.Ordinal)) name = bias[..^".bias".Length] + ".weight";
            else throw new BigModelException(BigModelErrorCode.UnsupportedFormat,
                $"the {node.OpType} weight '{weight.Name}' has no named bias to take its module name from.", file, weight.FileOffset, weight.Name);
            if (linear.TryGetValue(weight.Name, out var seen) && seen != (name, transposed))
                throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "the weight feeds two different layers.", file, weight.FileOffset, weight.Name);
            linear[weight.Name] = (name, transposed);
        }

        var tensors = new List<ConvertedTensor>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var init in model.Initializers)
        {
            if (init.DataType != OnnxDataType.Float || init.Dims.Count == 0) continue;
            if (init.Data.Length != init.ElementCount * 4)
                throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "the initializer has no data for its elements.", file, init.FileOffset, init.Name);
            ConvertedTensor tensor;
            if (linear.TryGetValue(init.Name, out var l))
            {
                long[] shape = l.Transposed ? [init.Dims[1], init.Dims[0]] : [init.Dims[0], init.Dims[1]];
                tensor = new ConvertedTensor(l.Name, shape, init, l.Transposed);
            }
            else if (IsModuleName(init.Name))
            {
                tensor = new ConvertedTensor(init.Name, [.. init.Dims], init, false);
            }
            else if (init.ElementCount == 1)
            {
                continue; // a folded constant such as a scale or an epsilon
            }
            else
            {
                throw new BigModelException(BigModelErrorCode.UnsupportedFormat,
                    $"initializer [{string.Join(", ", init.Dims)}] is neither a named parameter nor a Linear weight.", file, init.FileOffset, init.Name);
            }
            if (!names.Add(tensor.Name))
                throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "two initializers map to the same checkpoint tensor.", file, init.FileOffset, tensor.Name);
            tensors.Add(tensor);
        }
        return (tensors, Dimensions(model, tensors, file));
    }

    private static bool IsModuleName(string name) =>
        (name.EndsWith(".weight", StringComparison.Ordinal) || name.EndsWith(".bias", StringComparison.Ordinal))
        && name.Split('.').All(part => part.Length > 0 && part.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'));

    private static BertDimensions Dimensions(OnnxModel model, List<ConvertedTensor> tensors, string? file)
    {
        var byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        long[] Shape(string name, int rank) => byName.TryGetValue(name, out var t)
            ? t.Shape.Length == rank
                ? t.Shape
                : throw new BigModelException(BigModelErrorCode.UnsupportedFormat, $"the parameter has {t.Shape.Length} dimensions instead of {rank}.", file, tensor: name)
            : throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "the graph has no such BERT parameter.", file, tensor: name);

        var words = Shape("embeddings.word_embeddings.weight", 2);
        var positions = Shape("embeddings.position_embeddings.weight", 2);
        var types = Shape("embeddings.token_type_embeddings.weight", 2);
        int hidden = (int)words[1];
        var layerIndices = new HashSet<int>();
        foreach (var m in tensors.Select(t => LayerPattern().Match(t.Name)).Where(m => m.Success))
        {
            if (!int.TryParse(m.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out int index) || index > 100_000)
                throw new BigModelException(BigModelErrorCode.UnsupportedFormat, $"layer number '{m.Groups[1].Value}' is out of range.", file);
            layerIndices.Add(index);
        }
        int layers = layerIndices.Count;
        if (layers == 0) throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "the graph has no encoder.layer.N parameters.", file);
        if (layerIndices.Max() != layers - 1)
            throw new BigModelException(BigModelErrorCode.UnsupportedFormat, $"the encoder layers are not numbered 0..{layers - 1}.", file);
        int intermediate = (int)Shape("encoder.layer.0.intermediate.dense.weight", 2)[0];

        int headDim = AttentionHeadDim(model, file);
        if (headDim <= 0 || hidden % headDim != 0)
            throw new BigModelException(BigModelErrorCode.UnsupportedFormat, $"attention head size {headDim} does not divide hidden size {hidden}.", file);

        return new BertDimensions(
            VocabSize: (int)words[0],
            HiddenSize: hidden,
            NumHiddenLayers: layers,
            NumAttentionHeads: hidden / headDim,
            IntermediateSize: intermediate,
            MaxPositionEmbeddings: (int)positions[0],
            TypeVocabSize: (int)types[0],
            LayerNormEps: LayerNormEpsilon(model, file),
            HiddenAct: Activation(model, file),
            HasPooler: byName.ContainsKey("pooler.dense.weight"));
    }

    /// <summary>
    /// The head size, from the attention scores' scaling: the product of two computed tensors (Q·Kᵀ) divided by
    /// the constant √head_dim.
    /// </summary>
    private static int AttentionHeadDim(OnnxModel model, string? file)
    {
        var producers = ProducerOf(model);
        foreach (var div in model.Nodes.Where(n => n.OpType == "Div" && n.Inputs.Count == 2))
        {
            if (!producers.TryGetValue(div.Inputs[0], out var mm) || mm.OpType != "MatMul") continue;
            if (mm.Inputs.Any(i => model.Initializer(i) is not null)) continue;
            if (ScalarValue(model, div.Inputs[1]) is not double scale) continue;
            double d = scale * scale;
            int rounded = (int)Math.Round(d);
            if (rounded > 0 && Math.Abs(d - rounded) < 1e-3 * rounded) return rounded;
        }
        throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "no attention score scaling (MatMul / √d) was found; the head count cannot be derived.", file);
    }

    /// <summary>LayerNorm's epsilon: the constant added to the variance just before its square root.</summary>
    private static double LayerNormEpsilon(OnnxModel model, string? file)
    {
        var producers = ProducerOf(model);
        foreach (var sqrt in model.Nodes.Where(n => n.OpType == "Sqrt" && n.Inputs.Count == 1))
        {
            if (!producers.TryGetValue(sqrt.Inputs[0], out var add) || add.OpType != "Add") continue;
            foreach (var input in add.Inputs)
                if (ScalarValue(model, input) is double eps)
                    // The graph holds a float32; its shortest round-trip text is the value the config was written with.
                    return double.Parse(((float)eps).ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        }
        foreach (var ln in model.Nodes.Where(n => n.OpType == "LayerNormalization"))
            if (ln.Attribute("epsilon") is double eps)
                return double.Parse(((float)eps).ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "no LayerNorm epsilon was found in the graph.", file);
    }

    /// <summary>BERT's "gelu" is the exact, erf-based GELU; the tanh approximation is "gelu_new".</summary>
    private static string Activation(OnnxModel model, string? file)
    {
        if (model.Nodes.Any(n => n.OpType is "Erf" or "Gelu")) return "gelu";
        if (model.Nodes.Count(n => n.OpType == "Tanh") > 1 || model.Nodes.Any(n => n.OpType == "FastGelu")) return "gelu_new";
        if (model.Nodes.Any(n => n.OpType == "Relu")) return "relu";
        throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "the encoder's activation function was not recognised.", file);
    }

    private static Dictionary<string, OnnxNode> ProducerOf(OnnxModel model)
    {
        var producers = new Dictionary<string, OnnxNode>(StringComparer.Ordinal);
        foreach (var node in model.Nodes)
            foreach (var output in node.Outputs)
                producers[output] = node;
        return producers;
    }

    private static double? ScalarValue(OnnxModel model, string name)
    {
        var t = model.Initializer(name);
        if (t is null || t.ElementCount != 1) return null;
        return t.DataType switch
        {
            OnnxDataType.Float when t.Data.Length == 4 => BitConverter.ToSingle(t.Data.Span),
            OnnxDataType.Double when t.Data.Length == 8 => BitConverter.ToDouble(t.Data.Span),
            _ => null,
        };
    }
}
