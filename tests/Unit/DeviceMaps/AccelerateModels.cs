using BigModel.Checkpoints;
using BigModel.DeviceMaps;

namespace BigModel.Tests.DeviceMaps;

/// <summary>
/// The torch modules of Accelerate's tests/test_modeling_utils.py, expressed as the tensors their state_dict holds.
///
/// In-memory lists keep Accelerate's names in registration order (the planner takes a list in the order given).
/// Checkpoints written to disk are re-read through <see cref="Checkpoint.Open"/>, which sorts names naturally; there
/// the modules are renamed so that natural order equals registration order:
///   ModelForTest.linear1   → a_linear1
///   ModelForTest.batchnorm → b_batchnorm
///   ModelForTest.linear2   → c_linear2
/// (nn.Sequential children "0", "1", "2" and "layer1".."layer3" already sort in registration order).
/// </summary>
internal static class AccelerateModels
{
    public static TensorInfo T(string name, long[] shape, DType dtype = DType.F32)
    {
        long n = shape.Aggregate(1L, (a, d) => a * d);
        return new TensorInfo(name, dtype, shape, dtype.ByteCount(n)!.Value, "", 0);
    }

    /// <summary>nn.Linear(in, out): weight [out, in], bias [out].</summary>
    public static IEnumerable<TensorInfo> Linear(string name, int inFeatures, int outFeatures, DType dtype = DType.F32, bool bias = true)
    {
        yield return T(name + ".weight", [outFeatures, inFeatures], dtype);
        if (bias) yield return T(name + ".bias", [outFeatures], dtype);
    }

    /// <summary>nn.BatchNorm1d(n): weight, bias, running_mean, running_var and the int64 num_batches_tracked.</summary>
    public static IEnumerable<TensorInfo> BatchNorm(string name, int n, DType dtype = DType.F32)
    {
        yield return T(name + ".weight", [n], dtype);
        yield return T(name + ".bias", [n], dtype);
        yield return T(name + ".running_mean", [n], dtype);
        yield return T(name + ".running_var", [n], dtype);
        yield return T(name + ".num_batches_tracked", [], DType.I64);
    }

    /// <summary>ModelForTest: linear1 = Linear(3, 4), batchnorm = BatchNorm1d(4), linear2 = Linear(4, 5); 236 bytes in float32.</summary>
    public static List<TensorInfo> ModelForTest(string prefix = "", DType dtype = DType.F32, bool renamed = false)
    {
        var (l1, bn, l2) = renamed ? ("a_linear1", "b_batchnorm", "c_linear2") : ("linear1", "batchnorm", "linear2");
        return [.. Linear(prefix + l1, 3, 4, dtype), .. BatchNorm(prefix + bn, 4, dtype), .. Linear(prefix + l2, 4, 5, dtype)];
    }

    public static ModuleTree Tree(IReadOnlyList<TensorInfo> tensors, IReadOnlyList<string>? noSplit = null,
        IReadOnlyList<IReadOnlyList<string>>? tied = null, IReadOnlyCollection<string>? buffers = null, DType? dtype = null)
    {
        var buffered = buffers is null ? null : new HashSet<string>(buffers);
        return ModuleTree.Build(tensors, new ModuleTreeOptions
        {
            DType = dtype,
            NoSplit = (noSplit ?? []).Select(NoSplitRule.FromGlob).ToList(),
            TiedParameters = tied ?? [],
            IsBuffer = buffered is null ? null : n => buffered.Contains(n) || ModuleTree.IsWellKnownBuffer(n),
        });
    }

    public static MaxMemory Budget(params (object Device, long Bytes)[] entries) =>
        MaxMemory.Create(entries.Select(e => new KeyValuePair<Device, long>(Device.FromObject(e.Device), e.Bytes)));

    /// <summary>infer_auto_device_map with clean_result=True, as a plain dictionary for comparison.</summary>
    public static Dictionary<string, string> Infer(ModuleTree tree, MaxMemory memory, bool offloadBuffers = false, bool fallback = false) =>
        Cleaned(AutoDeviceMap.Infer(tree, memory, offloadBuffers, fallback));

    public static Dictionary<string, string> Cleaned(AutoDeviceMapResult result) =>
        DeviceMapCleaner.Clean(result.Placements.Select(p => new KeyValuePair<string, Device>(p.Module.Name, p.Device)))
            .ToDictionary(e => e.Key, e => e.Value.Name);

    /// <summary>Accelerate's expected maps, written as in its tests: ints for GPUs, strings otherwise.</summary>
    public static Dictionary<string, string> Expected(params (string Module, object Device)[] entries) =>
        entries.ToDictionary(e => e.Module, e => Device.FromObject(e.Device).Name);

    public static void Equal(Dictionary<string, string> expected, Dictionary<string, string> actual)
    {
        var e = string.Join(", ", expected.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}: {p.Value}"));
        var a = string.Join(", ", actual.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}: {p.Value}"));
        Assert.Equal(e, a);
    }
}
