namespace BigModel.Checkpoints.PyTorch;

/// <summary>What an allowlisted global is, which decides what calling or instantiating it may produce.</summary>
internal enum TorchGlobalKind
{
    OrderedDict,
    Counter,
    RebuildTensor,
    RebuildTensorV2,
    RebuildTensorV3,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    RebuildDeviceTensorFromCpu,
    Parameter,
    TensorClass,
    Size,
    Device,
    GetLayout,
    CodecsEncode,
    Set,
    ByteArray,
    Complex,
    DType,
    StorageType,
    UntypedStorageType,
}
