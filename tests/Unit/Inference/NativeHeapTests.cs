using System.Text.Json;
using BigModel.Inference;
using BigModel.Tests.Support;

namespace BigModel.Tests.Inference;

/// <summary>Freed heap memory handed back to the system after a session closes (glibc).</summary>
public sealed class NativeHeapTests
{
    [Fact]
    public void Trimming_returns_freed_heap_holes_to_the_system()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.False(NativeHeap.Trim());
            return;
        }
        // In a process of its own (the harness): in this one, other threads' allocations reuse the freed memory.
        var (code, output) = HarnessProcess.Run(TimeSpan.FromMinutes(2), "heap-trim");
        if (code == 3)
        {
            // Not glibc (musl, say): there is no trim to call, and Trim says so.
            Assert.False(NativeHeap.Trim(), output);
            return;
        }
        Assert.True(code == 0, output);
        using var json = JsonDocument.Parse(output.Trim().Split('\n')[^1]);
        var root = json.RootElement;
        long freed = root.GetProperty("freedBytes").GetInt64(), before = root.GetProperty("before").GetInt64(), after = root.GetProperty("after").GetInt64();
        Assert.True(before > freed / 2, $"the freed blocks were not kept as holes ({before >> 20} of {freed >> 20} MiB resident): nothing to trim");
        Assert.True(root.GetProperty("trimmed").GetBoolean(), "malloc_trim is not available on glibc");
        Assert.True(after < freed / 10, $"{before >> 20} MiB of the {freed >> 20} MiB freed were resident before trimming, {after >> 20} MiB after");
    }
}
