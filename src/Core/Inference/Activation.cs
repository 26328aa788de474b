using BigModel.Errors;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>The activation functions config.json's <c>hidden_act</c> names, with transformers' meanings.</summary>
internal static class Activation
{
    public static Func<Tensor, Tensor> Parse(string? name, string? configPath) => (name ?? "").ToLowerInvariant() switch
    {
        "silu" or "swish" => x => nn.functional.silu(x),
        "gelu" => x => nn.functional.gelu(x),
        "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => x => nn.functional.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh),
        "relu" => x => nn.functional.relu(x),
        _ => throw new BigModelException(BigModelErrorCode.UnsupportedArchitecture,
            $"hidden_act '{name}' is not supported; supported: silu, gelu, gelu_new, gelu_pytorch_tanh, relu.", configPath),
    };
}
