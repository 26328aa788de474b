using System.Text;
using BigModel.Architectures;
using BigModel.Errors;

namespace BigModel.Tests.Architectures;

public sealed class ModelConfigTests
{
    private static ModelConfig Parse(string json) => ModelConfig.Parse(Encoding.UTF8.GetBytes(json), "config.json");

    [Theory]
    [InlineData("bos_token_id", 2147483648L)]
    [InlineData("pad_token_id", 4294967296L)]
    [InlineData("eos_token_id", 2147483648L)]
    public void Values_beyond_int_are_refused_rather_than_wrapped(string key, long value)
    {
        var e = Assert.Throws<BigModelException>(() => Parse($$"""{"model_type":"llama","{{key}}":{{value}}}"""));
        Assert.Equal(BigModelErrorCode.ConfigInvalidValue, e.Code);
        Assert.Contains(key, e.Message);
    }

    [Fact]
    public void The_largest_int_is_kept()
    {
        var config = Parse("""{"model_type":"llama","bos_token_id":2147483647,"eos_token_id":[2147483647, -1]}""");
        Assert.Equal(int.MaxValue, config.BosTokenId);
        Assert.Equal([int.MaxValue, -1], config.EosTokenIds);
    }
}
