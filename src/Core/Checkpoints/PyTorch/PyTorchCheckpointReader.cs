using BigModel.Errors;

namespace BigModel.Checkpoints.PyTorch;

public static class PyTorchCheckpointReader
{
    public static IReadOnlyList<TensorInfo> ReadTensors(string path) =>
        throw new BigModelException(BigModelErrorCode.UnsupportedFormat, "PyTorch archives are not readable yet.", path);
}
