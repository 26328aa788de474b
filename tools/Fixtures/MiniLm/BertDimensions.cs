namespace BigModel.Fixtures.MiniLm;

/// <summary>The BertConfig values a converted ONNX graph implies; every one is read from the graph, none assumed.</summary>
public sealed record BertDimensions(
    int VocabSize,
    int HiddenSize,
    int NumHiddenLayers,
    int NumAttentionHeads,
    int IntermediateSize,
    int MaxPositionEmbeddings,
    int TypeVocabSize,
    double LayerNormEps,
    string HiddenAct,
    bool HasPooler);
