using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Errors;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace BigModel.Inference;

/// <summary>
/// BERT as a sentence encoder (the sentence-transformers way):
///
///   tokens → word + position + token-type embeddings → LayerNorm
///          → N × [ x = LN(x + Attention(x, mask)) ; x = LN(x + Dense(act(Dense(x)))) ]
///          → pooling over the real (unmasked) tokens → optional L2 normalisation
///
/// Post-norm encoder layers, bidirectional attention in which padding positions are masked out as keys. As with
/// <see cref="LlamaModel"/>, weights arrive per block (embeddings, then each layer) from wherever they are placed.
/// </summary>
internal sealed class BertModel
{
    // ---------------------------------------------------------------- hyper-parameters (config.json)

    public int Hidden { get; }
    public int Layers { get; }
    public int Heads { get; }
    public int Intermediate { get; }
    public int Vocab { get; }
    public int MaxPositions { get; }
    public double LayerNormEps { get; }

    private readonly int _headDim;
    private readonly Func<Tensor, Tensor> _act;
    private readonly ILinearKernel _linear;

    /// <summary>Blocks in forward order: embeddings, then encoder layers.</summary>
    public IReadOnlyList<ModelBlock> Blocks { get; }

    private BertModel(ModelConfig c, ArchitectureSpec spec, Checkpoint checkpoint, ILinearKernel linear)
    {
        Hidden = c.Require(c.HiddenSize, "hidden_size");
        Layers = c.Require(c.NumHiddenLayers, "num_hidden_layers");
        Heads = c.Require(c.NumAttentionHeads, "num_attention_heads");
        Intermediate = c.Require(c.IntermediateSize, "intermediate_size");
        Vocab = c.Require(c.VocabSize, "vocab_size");
        MaxPositions = c.Require(c.MaxPositionEmbeddings, "max_position_embeddings");
        if (Hidden % Heads != 0)
            throw new BigModelException(BigModelErrorCode.ConfigInvalidValue, $"hidden_size {Hidden} is not a multiple of num_attention_heads {Heads}.", c.Path);
        _headDim = Hidden / Heads;
        LayerNormEps = c.LayerNormEps ?? 1e-12;
        _act = Activation.Parse(c.HiddenAct ?? "gelu", c.Path);
        _linear = linear;
        Blocks = PlanBlocks(checkpoint, spec, c);
    }

    public static BertModel Create(Checkpoint checkpoint, ArchitectureSpec spec, ModelConfig config, ILinearKernel? linear = null) =>
        new(config, spec, checkpoint, linear ?? TorchLinearKernel.Instance);

    // ---------------------------------------------------------------- forward

    /// <summary>
    /// Encodes a padded batch: <paramref name="ids"/> and <paramref name="mask"/> are <c>[B, T]</c> int64 (mask 1 for
    /// real tokens, 0 for padding). Returns the last hidden states <c>[B, T, hidden]</c> in float32.
    /// </summary>
    public Tensor Encode(Tensor ids, Tensor mask, Func<int, BlockWeights> weights, CancellationToken cancel)
    {
        using var noGrad = no_grad();
        Tensor x;
        using (var w = weights(0))
        using (var scope = NewDisposeScope())
            x = Embed(w, ids).MoveToOuterDisposeScope();

        for (int layer = 0; layer < Layers; layer++)
        {
            cancel.ThrowIfCancellationRequested();
            using var w = weights(1 + layer);
            using var scope = NewDisposeScope();
            // Keys at padding positions are hidden from every query: [B, 1, 1, T], true = may attend.
            var keep = mask.to(w.Device).to(ScalarType.Bool).view(mask.shape[0], 1, 1, mask.shape[1]);
            var next = Layer(w, x.to(w.Device), keep).MoveToOuterDisposeScope();
            x.Dispose();
            x = next;
        }
        using (var scope = NewDisposeScope())
        {
            var result = x.to(ScalarType.Float32).MoveToOuterDisposeScope();
            if (!ReferenceEquals(result, x)) x.Dispose();
            return result;
        }
    }

    private Tensor Embed(BlockWeights w, Tensor ids)
    {
        long b = ids.shape[0], t = ids.shape[1];
        var words = w["word_embeddings.weight"];
        var x = words.index_select(0, ids.flatten().to(words.device)).view(b, t, Hidden).to(w.Device);
        var positions = w["position_embeddings.weight"];
        x = x.Plus(positions.narrow(0, 0, t).to(w.Device).unsqueeze(0));
        // Single sentences: every token has token type 0.
        if (w.Optional("token_type_embeddings.weight") is Tensor types) x = x.Plus(types.narrow(0, 0, 1).to(w.Device).unsqueeze(0));
        return LayerNorm(x, w, "LayerNorm");
    }

    /// <summary>One post-norm encoder layer.</summary>
    private Tensor Layer(BlockWeights w, Tensor x, Tensor keep)
    {
        long b = x.shape[0], t = x.shape[1];
        var q = Linear(w, "attention.self.query", x).view(b, t, Heads, _headDim).transpose(1, 2);
        var k = Linear(w, "attention.self.key", x).view(b, t, Heads, _headDim).transpose(1, 2);
        var v = Linear(w, "attention.self.value", x).view(b, t, Heads, _headDim).transpose(1, 2);
        var context = F.scaled_dot_product_attention(q, k, v, keep).transpose(1, 2).reshape(b, t, Hidden);
        var attended = LayerNorm(x.Plus(Linear(w, "attention.output.dense", context)), w, "attention.output.LayerNorm");
        var inner = _act(Linear(w, "intermediate.dense", attended));
        return LayerNorm(attended.Plus(Linear(w, "output.dense", inner)), w, "output.LayerNorm");
    }

    private Tensor Linear(BlockWeights w, string name, Tensor x) =>
        _linear.Linear(x, w[name + ".weight"], w.Optional(name + ".bias"));

    private Tensor LayerNorm(Tensor x, BlockWeights w, string name) =>
        F.layer_norm(x, [Hidden], w[name + ".weight"], w[name + ".bias"], LayerNormEps);

    // ---------------------------------------------------------------- pooling

    /// <summary>
    /// One vector per sequence from hidden states <c>[B, T, H]</c>: the mask-weighted mean of the token vectors
    /// (sentence-transformers' mean pooling) or the first token's vector (CLS pooling), L2-normalised on request.
    /// </summary>
    public static Tensor Pool(Tensor hidden, Tensor mask, EmbeddingPooling pooling, bool normalize)
    {
        using var scope = NewDisposeScope();
        Tensor pooled;
        if (pooling == EmbeddingPooling.Cls)
        {
            pooled = hidden.select(1, 0);
        }
        else
        {
            var m = mask.to(hidden.device).to(hidden.dtype).unsqueeze(-1);
            pooled = (hidden * m).sum(1) / m.sum(1).AtLeast(1e-9);
        }
        if (normalize) pooled = F.normalize(pooled, p: 2, dim: 1);
        return pooled.MoveToOuterDisposeScope();
    }

    // ---------------------------------------------------------------- blocks and their tensors

    private IReadOnlyList<ModelBlock> PlanBlocks(Checkpoint checkpoint, ArchitectureSpec spec, ModelConfig c)
    {
        var t = new ModelTensors(checkpoint, spec, c, "embeddings.word_embeddings.weight");
        var p = t.Prefix;
        var blocks = new List<ModelBlock>(Layers + 1);
        var embeddings = new List<(string, TensorInfo?)>
        {
            ("word_embeddings.weight", t.Require("embeddings.word_embeddings.weight", Vocab, Hidden)),
            ("position_embeddings.weight", t.Require("embeddings.position_embeddings.weight", MaxPositions, Hidden)),
            ("LayerNorm.weight", t.Require("embeddings.LayerNorm.weight", Hidden)),
            ("LayerNorm.bias", t.Require("embeddings.LayerNorm.bias", Hidden)),
        };
        if (t.Find(p + "embeddings.token_type_embeddings.weight") is TensorInfo types)
            embeddings.Add(("token_type_embeddings.weight", t.Require("embeddings.token_type_embeddings.weight", types.Shape[0], Hidden)));
        var embeddingBlock = Block(0, p + "embeddings", embeddings);
        blocks.Add(new ModelBlock(0, embeddingBlock.Name,
            embeddingBlock.Tensors.Select(x => x with { Gathered = x.Key == "word_embeddings.weight" }).ToList()));
        for (int i = 0; i < Layers; i++)
        {
            var l = $"encoder.layer.{i}.";
            var list = new List<(string, TensorInfo?)>();
            void Add(string name, long rows, long columns)
            {
                list.Add((name + ".weight", t.Require(l + name + ".weight", rows, columns)));
                list.Add((name + ".bias", t.Require(l + name + ".bias", rows)));
            }
            void Norm(string name)
            {
                list.Add((name + ".weight", t.Require(l + name + ".weight", Hidden)));
                list.Add((name + ".bias", t.Require(l + name + ".bias", Hidden)));
            }
            Add("attention.self.query", Hidden, Hidden);
            Add("attention.self.key", Hidden, Hidden);
            Add("attention.self.value", Hidden, Hidden);
            Add("attention.output.dense", Hidden, Hidden);
            Norm("attention.output.LayerNorm");
            Add("intermediate.dense", Intermediate, Hidden);
            Add("output.dense", Hidden, Intermediate);
            Norm("output.LayerNorm");
            blocks.Add(Block(1 + i, p + $"encoder.layer.{i}", list));
        }
        t.ThrowIfInvalid();
        return blocks;
    }

    private static ModelBlock Block(int index, string name, List<(string Key, TensorInfo? Tensor)> tensors) =>
        new(index, name, tensors.Where(x => x.Tensor is not null).Select(x => new BlockTensor(x.Key, x.Tensor!)).ToList());
}
