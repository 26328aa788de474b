namespace BigModel.Tests.Support;

/// <summary>
/// Tests that measure process-wide state (the C heap, resident pages) and would be disturbed by other tests
/// allocating at the same time: they run after the parallel ones, one at a time.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AloneCollection
{
    public const string Name = "Alone";
}
