namespace BigModel.Fixtures.IO;

/// <summary>What a generator did: where, whether it had to (a complete fixture is reused), how much and how long.</summary>
public sealed record FixtureResult(string Path, bool Reused, long BytesWritten, TimeSpan Elapsed, IReadOnlyList<string> Notes)
{
    public override string ToString() => Reused
        ? $"{Path}: complete already, reused"
        : $"{Path}: {BytesWritten:N0} bytes written in {Elapsed.TotalSeconds:F2} s";
}
