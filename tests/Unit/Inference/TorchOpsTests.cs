using BigModel.Inference;
using BigModel.Tests.Inference.Support;
using static TorchSharp.torch;

namespace BigModel.Tests.Inference;

[Collection(TorchCollection.Name)]
public sealed class TorchOpsTests
{
    [Fact]
    public void Held_scalars_survive_garbage_collections_during_native_calls()
    {
        // With TorchSharp's own a + b, a collection between creating its alpha Scalar and libtorch reading it
        // frees the Scalar first; hundreds of thousands of additions under constant collection expose that.
        using var scope = NewDisposeScope();
        var a = ones(16);
        var b = ones(16);
        bool stop = false;
        var collector = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        });
        collector.Start();
        int wrong = 0;
        try
        {
            for (int i = 0; i < 100_000; i++)
            {
                using var inner = NewDisposeScope();
                var sum = a.Plus(b).Plus(0.5).AtLeast(3.0);
                if (i % 1000 == 0 && sum[0].item<float>() != 3.0f) wrong++;
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            collector.Join();
        }
        Assert.Equal(0, wrong);
    }
}
