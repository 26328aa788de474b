namespace BigModel.Cmdlets.Infrastructure;

/// <summary>
/// Reports progress on the calling thread. Cmdlets may only write to the pipeline from their own thread, and
/// Progress&lt;T&gt; would post elsewhere.
/// </summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
