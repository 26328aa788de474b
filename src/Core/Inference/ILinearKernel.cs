using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// The matrix products of the models' linear layers, <c>y = x·Wᵀ + b</c>. The weight arrives wherever it lives
/// (a resident copy, pinned memory, or a view into a mapped checkpoint), so an implementation may read it in place.
/// libtorch's is the default; a decode-time CPU kernel can take the small-batch calls and leave the rest to it.
/// </summary>
internal interface ILinearKernel
{
    Tensor Linear(Tensor input, Tensor weight, Tensor? bias);
}

/// <summary>libtorch's <c>F.linear</c>, for every shape and device.</summary>
internal sealed class TorchLinearKernel : ILinearKernel
{
    public static TorchLinearKernel Instance { get; } = new();

    public Tensor Linear(Tensor input, Tensor weight, Tensor? bias) => nn.functional.linear(input, weight, bias);
}
