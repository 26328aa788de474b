using BigModel.Errors;

namespace BigModel.Checkpoints.PyTorch;

/// <summary>
/// The globals a weights file may name, following <c>torch.load(weights_only=True)</c>: tensor rebuild functions,
/// storage classes, dtypes, torch.Size, OrderedDict and a few builtins. A global is matched by its full dotted
/// name as written in the pickle; it is never imported or looked up, only recognised. Everything else is
/// refused when the GLOBAL / STACK_GLOBAL / INST opcode names it, before anything could use it.
/// </summary>
internal static class TorchGlobals
{
    private const int MaxNameLength = 200;

    private static readonly Dictionary<string, PyGlobal> Allowed = Build();

    /// <summary>Globals torch.load(weights_only=True) accepts but BigModel cannot turn into a plain dense tensor.</summary>
    private static readonly Dictionary<string, string> SafeButUnsupported = new(StringComparer.Ordinal)
    {
        ["torch._utils._rebuild_qtensor"] = "quantized tensors",
        ["torch._utils._rebuild_sparse_tensor"] = "sparse tensors",
        ["torch._utils._rebuild_sparse_csr_tensor"] = "sparse CSR tensors",
        ["torch._utils._rebuild_nested_tensor"] = "nested tensors",
        ["torch._utils._rebuild_meta_tensor_no_storage"] = "meta tensors (they have no data)",
        ["torch._utils._rebuild_wrapper_subclass"] = "tensor wrapper subclasses (they have no data of their own)",
        ["torch._utils._rebuild_device_tensor_from_numpy"] = "device tensors saved through numpy",
        ["torch._utils._rebuild_xla_tensor"] = "XLA tensors saved through numpy",
        ["torch.per_tensor_affine"] = "quantized tensors",
        ["torch.per_tensor_symmetric"] = "quantized tensors",
        ["torch.per_channel_affine"] = "quantized tensors",
        ["torch.per_channel_symmetric"] = "quantized tensors",
        ["torch.per_channel_affine_float_qparams"] = "quantized tensors",
    };

    /// <summary>The Python 2 module names that pickle protocol 2 may carry, mapped as Python 3 does.</summary>
    private static readonly Dictionary<string, string> ModuleRenames = new(StringComparer.Ordinal)
    {
        ["__builtin__"] = "builtins",
        ["copy_reg"] = "copyreg",
    };

    /// <summary>
    /// The global <paramref name="module"/>.<paramref name="name"/>, or a typed error: PickleForbiddenGlobal for
    /// anything outside the allowlist, PickleUnsupportedTensorType for safe torch globals BigModel cannot represent.
    /// </summary>
    public static PyGlobal Resolve(string module, string name, PickleContext context, long at)
    {
        // No allowlisted name is anywhere near this long; checking first keeps memoised giant strings cheap.
        if (module.Length + name.Length > MaxNameLength)
            throw context.Error(BigModelErrorCode.PickleForbiddenGlobal,
                $"forbidden global '{ZipArchiveIndex.Show(module)}.{ZipArchiveIndex.Show(name)}' ({module.Length + name.Length} characters): not on the allowlist. Nothing was imported or executed.", at);
        if (ModuleRenames.TryGetValue(module, out var renamed)) module = renamed;
        var full = module + "." + name;
        if (Allowed.TryGetValue(full, out var global)) return global;
        if (SafeButUnsupported.TryGetValue(full, out var what))
            throw context.Error(BigModelErrorCode.PickleUnsupportedTensorType,
                $"the pickle uses {ZipArchiveIndex.Show(full)}: {what} cannot be read by BigModel; convert them to dense tensors (tensor.dequantize() / .to_dense()) and save again.", at);
        throw context.Error(BigModelErrorCode.PickleForbiddenGlobal,
            $"forbidden global '{ZipArchiveIndex.Show(full)}': a weights file may only name torch tensor rebuild functions, storage types, dtypes, torch.Size, OrderedDict and plain containers (the rules of torch.load(weights_only=True)). Nothing was imported or executed.", at);
    }

    private static Dictionary<string, PyGlobal> Build()
    {
        var map = new Dictionary<string, PyGlobal>(StringComparer.Ordinal);
        void Add(string full, TorchGlobalKind kind, DType? dtype = null, string? unsupported = null) =>
            map[full] = new PyGlobal(full, kind, dtype, unsupported);

        Add("collections.OrderedDict", TorchGlobalKind.OrderedDict);
        Add("collections.Counter", TorchGlobalKind.Counter);
        Add("torch._utils._rebuild_tensor", TorchGlobalKind.RebuildTensor);
        Add("torch._utils._rebuild_tensor_v2", TorchGlobalKind.RebuildTensorV2);
        Add("torch._utils._rebuild_tensor_v3", TorchGlobalKind.RebuildTensorV3);
        Add("torch._utils._rebuild_parameter", TorchGlobalKind.RebuildParameter);
        Add("torch._utils._rebuild_parameter_with_state", TorchGlobalKind.RebuildParameterWithState);
        Add("torch._utils._rebuild_device_tensor_from_cpu_tensor", TorchGlobalKind.RebuildDeviceTensorFromCpu);
        Add("torch._tensor._rebuild_from_type_v2", TorchGlobalKind.RebuildFromTypeV2);
        Add("torch.nn.parameter.Parameter", TorchGlobalKind.Parameter);
        Add("torch.Tensor", TorchGlobalKind.TensorClass);
        Add("torch._tensor.Tensor", TorchGlobalKind.TensorClass);
        Add("torch.Size", TorchGlobalKind.Size);
        Add("torch.device", TorchGlobalKind.Device);
        Add("torch.serialization._get_layout", TorchGlobalKind.GetLayout);
        Add("_codecs.encode", TorchGlobalKind.CodecsEncode);
        Add("builtins.set", TorchGlobalKind.Set);
        Add("builtins.bytearray", TorchGlobalKind.ByteArray);
        Add("builtins.complex", TorchGlobalKind.Complex);

        // dtypes, under the names str(torch.dtype) gives.
        (string Name, DType? DType)[] dtypes =
        [
            ("float32", DType.F32), ("float64", DType.F64), ("float16", DType.F16), ("bfloat16", DType.BF16),
            ("int64", DType.I64), ("int32", DType.I32), ("int16", DType.I16), ("int8", DType.I8),
            ("uint8", DType.U8), ("uint16", DType.U16), ("uint32", DType.U32), ("uint64", DType.U64),
            ("bool", DType.BOOL), ("complex64", DType.C64),
            ("float8_e4m3fn", DType.F8_E4M3), ("float8_e5m2", DType.F8_E5M2), ("float8_e8m0fnu", DType.F8_E8M0),
            ("complex128", null), ("complex32", null), ("float8_e4m3fnuz", null), ("float8_e5m2fnuz", null),
            ("float4_e2m1fn_x2", null), ("qint8", null), ("quint8", null), ("qint32", null), ("quint4x2", null),
            ("quint2x4", null), ("bits1x8", null), ("bits2x4", null), ("bits4x2", null), ("bits8", null), ("bits16", null),
        ];
        foreach (var (name, dtype) in dtypes)
            Add("torch." + name, TorchGlobalKind.DType, dtype, dtype is null ? $"torch.{name} has no safetensors equivalent" : null);
        for (int bits = 1; bits < 8; bits++)
        {
            Add($"torch.uint{bits}", TorchGlobalKind.DType, null, $"torch.uint{bits} has no safetensors equivalent");
            Add($"torch.int{bits}", TorchGlobalKind.DType, null, $"torch.int{bits} has no safetensors equivalent");
        }

        // Legacy typed storage classes: what torch.save writes as the storage type of a persistent id.
        (string Name, DType? DType)[] storages =
        [
            ("FloatStorage", DType.F32), ("DoubleStorage", DType.F64), ("HalfStorage", DType.F16), ("BFloat16Storage", DType.BF16),
            ("LongStorage", DType.I64), ("IntStorage", DType.I32), ("ShortStorage", DType.I16), ("CharStorage", DType.I8),
            ("ByteStorage", DType.U8), ("BoolStorage", DType.BOOL), ("ComplexFloatStorage", DType.C64),
            ("ComplexDoubleStorage", null), ("QUInt8Storage", null), ("QInt8Storage", null), ("QInt32Storage", null),
            ("QUInt4x2Storage", null), ("QUInt2x4Storage", null),
        ];
        foreach (var (name, dtype) in storages)
            Add("torch." + name, TorchGlobalKind.StorageType, dtype,
                dtype is null ? $"torch.{name} holds {(name.StartsWith('Q') ? "quantized" : "complex128")} elements, which have no safetensors equivalent" : null);
        foreach (var name in new[] { "torch.UntypedStorage", "torch.storage.UntypedStorage", "torch._UntypedStorage", "torch.storage._UntypedStorage" })
            Add(name, TorchGlobalKind.UntypedStorageType);
        return map;
    }
}
