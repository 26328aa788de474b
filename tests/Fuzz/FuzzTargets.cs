using BigModel.Fuzz.Targets;

namespace BigModel.Fuzz;

/// <summary>Every fuzz target, in the order runs report them.</summary>
public static class FuzzTargets
{
    public static IReadOnlyList<IFuzzTarget> All => [new SafetensorsTarget(), new IndexTarget(), new ConfigTarget(), new PyTorchArchiveTarget(), new PicklePayloadTarget(), new DeviceMapTarget()];
}
