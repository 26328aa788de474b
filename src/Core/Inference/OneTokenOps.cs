using TorchSharp;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>
/// RMSNorm and rotary embedding of a single float32 or float16 token on the CPU, computed in place of libtorch's chain of small
/// operations. A one-token decode step spends most of its time outside the linear layers in libtorch's per-call
/// overhead (several microseconds per operation, a dozen operations per norm or rotation), not in arithmetic on a
/// few thousand numbers. Used with the native decode kernel only, so forcing libtorch still gives the reference path.
/// Each method returns false (and does nothing) for anything but contiguous float32/float16 CPU tensors of one token.
/// </summary>
internal static unsafe class OneTokenOps
{
    /// <summary>
    /// RMSNorm as transformers computes it: in float32, x · rsqrt(mean(x²) + eps), then rounded to the input's type
    /// and scaled by the weight in that type.
    /// </summary>
    public static bool TryRmsNorm(Tensor x, Tensor weight, double eps, out Tensor result)
    {
        result = null!;
        long width = x.shape[^1];
        if (!IsCpu(x) || weight.dtype != x.dtype || !IsCpu(weight) || x.numel() != width || weight.numel() != width) return false;
        if (x.dtype == ScalarType.Float32)
        {
            var input = (float*)TorchTypes.DataPointer(x);
            var scale = (float*)TorchTypes.DataPointer(weight);
            float inverse = InverseRms(input, width, eps);
            result = empty(x.shape, x.dtype);
            var output = (float*)TorchTypes.DataPointer(result);
            for (long i = 0; i < width; i++) output[i] = scale[i] * (input[i] * inverse);
            return true;
        }
        if (x.dtype == ScalarType.Float16)
        {
            var input = (Half*)TorchTypes.DataPointer(x);
            var scale = (Half*)TorchTypes.DataPointer(weight);
            float inverse = InverseRms(input, width, eps);
            result = empty(x.shape, x.dtype);
            var output = (Half*)TorchTypes.DataPointer(result);
            // Each half-precision operation of libtorch computes in float32 and rounds its result to half.
            for (long i = 0; i < width; i++) output[i] = (Half)((float)scale[i] * (float)(Half)((float)input[i] * inverse));
            return true;
        }
        return false;
    }

    /// <summary>1 / √(mean(x²) + eps), summed in float32 in order (the one-token layer's norm uses it too).</summary>
    internal static float InverseRms(float* x, long width, double eps)
    {
        float sum = 0;
        for (long i = 0; i < width; i++) sum += x[i] * x[i];
        return 1f / MathF.Sqrt(sum / width + (float)eps);
    }

    private static float InverseRms(Half* x, long width, double eps)
    {
        float sum = 0;
        for (long i = 0; i < width; i++) sum += (float)x[i] * (float)x[i];
        return 1f / MathF.Sqrt(sum / width + (float)eps);
    }

    /// <summary>
    /// Rotates the query and key projections of one token in place: per head, (x1, x2) → (x1·cos − x2·sin,
    /// x2·cos + x1·sin) over the two halves of the head dimension, with cos and sin of the token's position.
    /// </summary>
    /// <param name="queries">The q projection, <c>[1, 1, heads × headDim]</c>.</param>
    /// <param name="keys">The k projection, <c>[1, 1, kvHeads × headDim]</c>.</param>
    /// <param name="cos">cos of the position, <c>[1, headDim]</c>, in the projections' type.</param>
    /// <param name="sin">sin of the position, <c>[1, headDim]</c>, in the projections' type.</param>
    /// <param name="headDim">Dimensions per head (even).</param>
    public static bool TryRotate(Tensor queries, Tensor keys, Tensor cos, Tensor sin, int headDim)
    {
        var type = queries.dtype;
        if (type is not (ScalarType.Float32 or ScalarType.Float16)) return false;
        if (!IsCpu(queries) || !IsCpu(keys) || !IsCpu(cos) || !IsCpu(sin) || keys.dtype != type || cos.dtype != type || sin.dtype != type) return false;
        if (cos.numel() != headDim || sin.numel() != headDim || queries.numel() % headDim != 0 || keys.numel() % headDim != 0) return false;
        if (queries.shape[^2] != 1 || keys.shape[^2] != 1) return false;
        foreach (var x in new[] { queries, keys })
        {
            if (type == ScalarType.Float32)
                Rotate((float*)TorchTypes.DataPointer(x), x.numel() / headDim, headDim, (float*)TorchTypes.DataPointer(cos), (float*)TorchTypes.DataPointer(sin));
            else
                Rotate((Half*)TorchTypes.DataPointer(x), x.numel() / headDim, headDim, (Half*)TorchTypes.DataPointer(cos), (Half*)TorchTypes.DataPointer(sin));
        }
        return true;
    }

    // The same products and sum, in the same order, as q·cos + rotate_half(q)·sin.
    private static void Rotate(float* x, long heads, int headDim, float* cos, float* sin)
    {
        int half = headDim / 2;
        for (long h = 0; h < heads; h++, x += headDim)
        {
            for (int i = 0; i < half; i++)
            {
                float x1 = x[i], x2 = x[i + half];
                float first = x1 * cos[i], second = -x2 * sin[i];
                x[i] = first + second;
                first = x2 * cos[i + half];
                second = x1 * sin[i + half];
                x[i + half] = first + second;
            }
        }
    }

    // As above, rounding to half after every operation as libtorch's half-precision kernels do.
    private static void Rotate(Half* x, long heads, int headDim, Half* cos, Half* sin)
    {
        int half = headDim / 2;
        for (long h = 0; h < heads; h++, x += headDim)
        {
            for (int i = 0; i < half; i++)
            {
                float x1 = (float)x[i], x2 = (float)x[i + half];
                Half first = (Half)(x1 * (float)cos[i]), second = (Half)(-x2 * (float)sin[i]);
                x[i] = (Half)((float)first + (float)second);
                first = (Half)(x2 * (float)cos[i + half]);
                second = (Half)(x1 * (float)sin[i + half]);
                x[i + half] = (Half)((float)first + (float)second);
            }
        }
    }

    private static bool IsCpu(Tensor t) => t.device_type == DeviceType.CPU && t.is_contiguous() && !t.requires_grad;
}
