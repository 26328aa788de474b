using BigModel.Errors;
using BigModel.Tests.Support;

namespace BigModel.Tests.Errors;

/// <summary>Error codes are a public contract: each one is documented in docs/errors.md with its number and name.</summary>
public sealed class ErrorCodeDocumentationTests
{
    [Fact]
    public void Every_error_code_is_documented_with_its_number_and_name()
    {
        var text = File.ReadAllText(Path.Combine(SharedModels.RepositoryRoot, "docs", "errors.md"));
        var missing = Enum.GetValues<BigModelErrorCode>()
            .Where(code => !text.Contains($"| BM{(int)code:D4} | {code} |", StringComparison.Ordinal))
            .Select(code => $"BM{(int)code:D4} {code}")
            .ToList();
        Assert.True(missing.Count == 0, "docs/errors.md lacks: " + string.Join(", ", missing));
    }

    [Fact]
    public void Codes_are_unique_and_build_codes_match_their_numbers()
    {
        var values = Enum.GetValues<BigModelErrorCode>();
        Assert.Equal(values.Length, values.Select(v => (int)v).Distinct().Count());
        var e = new BigModelException(BigModelErrorCode.PickleForbiddenGlobal, "x");
        Assert.Equal("BM1304", e.BuildCode);
        Assert.Equal("BigModel.PickleForbiddenGlobal", e.ErrorId);
        Assert.Equal(BigModelErrorCategory.Security, e.Category);
    }
}
