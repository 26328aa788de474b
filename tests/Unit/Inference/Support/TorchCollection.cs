namespace BigModel.Tests.Inference.Support;

/// <summary>Tests that compute with torch run one at a time: they already use every core the process may use.</summary>
[CollectionDefinition(Name)]
public sealed class TorchCollection
{
    public const string Name = "torch";
}
