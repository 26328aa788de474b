using System.Runtime.InteropServices;
using BigModel.Checkpoints;
using BigModel.Errors;
using TorchSharp;
using static TorchSharp.torch;

namespace BigModel.Inference;

/// <summary>Conversions between BigModel's checkpoint vocabulary and TorchSharp's.</summary>
internal static class TorchTypes
{
    public static bool TryScalarType(DType dtype, out ScalarType type)
    {
        ScalarType? t = dtype switch
        {
            DType.BOOL => ScalarType.Bool,
            DType.U8 => ScalarType.Byte,
            DType.I8 => ScalarType.Int8,
            DType.I16 => ScalarType.Int16,
            DType.I32 => ScalarType.Int32,
            DType.I64 => ScalarType.Int64,
            DType.F16 => ScalarType.Float16,
            DType.BF16 => ScalarType.BFloat16,
            DType.F32 => ScalarType.Float32,
            DType.F64 => ScalarType.Float64,
            _ => null,
        };
        type = t ?? default;
        return t is not null;
    }

    public static ScalarType ScalarTypeOf(TensorInfo tensor) => TryScalarType(tensor.DType, out var t)
        ? t
        : throw new BigModelException(BigModelErrorCode.UnsupportedFormat,
            $"weights of dtype {tensor.DType} cannot be computed with; convert the checkpoint to F32, F16 or BF16.", tensor.File, tensor: tensor.Name);

    public static int ElementSize(ScalarType type) => type switch
    {
        ScalarType.Bool or ScalarType.Byte or ScalarType.Int8 => 1,
        ScalarType.Int16 or ScalarType.Float16 or ScalarType.BFloat16 => 2,
        ScalarType.Int32 or ScalarType.Float32 => 4,
        _ => 8,
    };

    public static bool IsFloating(ScalarType type) =>
        type is ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float64;

    /// <summary>The torch device a location computes on.</summary>
    public static Device DeviceOf(WeightLocation location) => location.Kind == WeightLocationKind.Cuda
        ? new Device(DeviceType.CUDA, location.DeviceIndex)
        : CPU;

    /// <summary>
    /// Takes <paramref name="tensor"/> out of the thread's dispose scope, if any: long-lived tensors (weights, caches)
    /// are freed by their owner, never by the scope of the forward step that happened to create them.
    /// </summary>
    public static Tensor Own(Tensor tensor)
    {
        var scope = CurrentDisposeScope;
        if (scope is not null && scope.Contains(tensor)) scope.Detach(tensor);
        return tensor;
    }

    /// <summary>Address of a tensor's first element (host or device memory).</summary>
    public static IntPtr DataPointer(Tensor tensor) => THSTensor_data(tensor.Handle);

    // TorchSharp 0.107 exposes no data_ptr for device tensors; its native library exports the accessor it uses itself.
    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr handle);
}
