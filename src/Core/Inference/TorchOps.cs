using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// Arithmetic that is safe from a TorchSharp 0.107 lifetime bug. Its operators and number arguments create native
/// Scalar objects (the <c>alpha</c> of <c>a + b</c>, the <c>1e-5</c> of <c>x + eps</c>) that nothing keeps alive
/// during the native call using them; a garbage collection in between finalises the Scalar and libtorch reads freed
/// memory, failing with "Expected false to be true" or, worse, computing with a wrong value. Every Scalar passed
/// here lives for the process, and the engine runs its torch calls inside dispose scopes, which hold temporary
/// tensors alive the same way.
/// </summary>
internal static class TorchOps
{
    private static readonly ConcurrentDictionary<double, Scalar> s_scalars = new();

    /// <summary>The integer 1, valid as <c>alpha</c> for floating and integer tensors alike.</summary>
    public static Scalar One { get; } = 1.ToScalar();

    /// <summary>A Scalar of <paramref name="value"/> that is never freed (the engine uses a handful of constants).</summary>
    public static Scalar Held(double value) => s_scalars.GetOrAdd(value, v => v.ToScalar());

    /// <summary>a + b.</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);

    /// <summary>a + value.</summary>
    public static Tensor Plus(this Tensor a, double value) => a.add(Held(value), One);

    /// <summary>max(a, value) element-wise.</summary>
    public static Tensor AtLeast(this Tensor a, double value) => a.clamp_min(Held(value));
}
