using System.Text;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Sharding;

namespace BigModel.Tests.Sharding;

public sealed class ConfigDTypeRewriterTests
{
    private static string Rewrite(string json, DType dtype) => Encoding.UTF8.GetString(ConfigDTypeRewriter.Rewrite(Encoding.UTF8.GetBytes(json), dtype));

    [Fact]
    public void Changes_only_the_value_text()
    {
        const string json = "{\n  \"rms_norm_eps\": 1e-05,\n  \"torch_dtype\": \"float32\",\n  \"vocab_size\": 32000\n}\n";
        Assert.Equal(json.Replace("float32", "bfloat16"), Rewrite(json, DType.BF16));
    }

    [Fact]
    public void Updates_the_newer_dtype_key_and_nested_sub_configs()
    {
        const string json = "{\"dtype\": \"bfloat16\", \"text_config\": {\"torch_dtype\": \"float32\", \"name\": \"dtype\"}, \"quant\": {\"dtype\": \"int8\"}}";
        Assert.Equal("{\"dtype\": \"float16\", \"text_config\": {\"torch_dtype\": \"float16\", \"name\": \"dtype\"}, \"quant\": {\"dtype\": \"int8\"}}",
            Rewrite(json, DType.F16));
    }

    [Fact]
    public void Adds_torch_dtype_first_when_missing()
    {
        Assert.Equal("{\n  \"torch_dtype\": \"float16\",\n  \"a\": 1\n}", Rewrite("{\n  \"a\": 1\n}", DType.F16));
        Assert.Equal("{ \"torch_dtype\": \"float32\"}", Rewrite("{}", DType.F32));
    }

    [Fact]
    public void Refuses_what_is_not_a_json_object()
    {
        Assert.Equal(BigModelErrorCode.ConfigNotJson, Assert.Throws<BigModelException>(() => Rewrite("[1]", DType.F16)).Code);
        Assert.Equal(BigModelErrorCode.ConfigNotJson, Assert.Throws<BigModelException>(() => Rewrite("{\"a\": ", DType.F16)).Code);
    }
}
