using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using BigModel.Errors;
using Microsoft.Build.Framework;

namespace BigModel.Build.Tasks;

/// <summary>
/// Runs a prompt or token ids through a model as a smoke test (Invoke-BigModel), in a separate process
/// (BigModel.Runner from the runtime package), and fails when the output differs from what is expected.
/// </summary>
public sealed class InvokeBigModel : BigModelTask
{
    [Required] public ITaskItem Checkpoint { get; set; } = null!;
    public string? Prompt { get; set; }
    /// <summary>Comma-separated token ids, for models without a tokenizer.</summary>
    public string? InputIds { get; set; }
    public int MaxNewTokens { get; set; } = 16;
    public string? DeviceMap { get; set; }
    public string? MaxMemory { get; set; }
    public string? DType { get; set; }
    /// <summary>What computes the linear layers on the CPU: Auto (default), LibTorch or Native (--linear-kernel of the runner).</summary>
    public string? LinearKernel { get; set; }
    /// <summary>How disk-placed weights are read: Auto (default), Mapped, Copied or Direct (--disk-access of the runner).</summary>
    public string? DiskAccess { get; set; }
    /// <summary>Fail (BM1908) unless the generated text starts with this.</summary>
    public string? ExpectedText { get; set; }
    /// <summary>Fail (BM1908) unless the generated ids start with these (comma-separated).</summary>
    public string? ExpectedIds { get; set; }
    /// <summary>BigModel.Runner.dll; by default the one in BigModelRuntimeDirectory.</summary>
    [Required] public string RunnerPath { get; set; } = "";
    public int TimeoutSeconds { get; set; } = 600;

    [Output] public string GeneratedText { get; private set; } = "";
    [Output] public string GeneratedIds { get; private set; } = "";
    [Output] public string DecodeTokensPerSecond { get; private set; } = "";

    protected override void Run()
    {
        if (!File.Exists(RunnerPath))
            throw new BigModelException(BigModelErrorCode.TorchUnavailable,
                $"BigModel.Runner.dll was not found at '{RunnerPath}'; reference the BigModel.Runtime package for this platform or set BigModelRuntimeDirectory.");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in Arguments()) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(TimeoutSeconds)))
        {
            process.Kill(entireProcessTree: true);
            throw new BigModelException(BigModelErrorCode.RunnerFailed, $"the model run did not finish within {TimeoutSeconds} s.", FullPath(Checkpoint));
        }
        var reply = ParseReply(stdout.Result, stderr.Result, process.ExitCode);
        GeneratedText = reply.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String ? text.GetString()! : "";
        GeneratedIds = string.Join(",", reply.GetProperty("generatedIds").EnumerateArray().Select(e => e.GetInt32()));
        DecodeTokensPerSecond = reply.GetProperty("decodeTokensPerSecond").GetDouble().ToString("0.0", CultureInfo.InvariantCulture);
        Log.LogMessage(MessageImportance.High, "{0}: {1} ({2} tokens/s)", Checkpoint.ItemSpec, GeneratedText.Length > 0 ? GeneratedText : "ids " + GeneratedIds, DecodeTokensPerSecond);
        if (ExpectedText is { Length: > 0 } && !GeneratedText.StartsWith(ExpectedText, StringComparison.Ordinal))
            throw new BigModelException(BigModelErrorCode.OutputMismatch, $"expected the output to start with \"{ExpectedText}\" but it is \"{GeneratedText}\".", FullPath(Checkpoint));
        if (ExpectedIds is { Length: > 0 } && !(GeneratedIds + ",").StartsWith(ExpectedIds.Replace(" ", "", StringComparison.Ordinal).TrimEnd(',') + ",", StringComparison.Ordinal))
            throw new BigModelException(BigModelErrorCode.OutputMismatch, $"expected the ids to start with {ExpectedIds} but they are {GeneratedIds}.", FullPath(Checkpoint));
    }

    private IEnumerable<string> Arguments()
    {
        yield return RunnerPath;
        yield return "generate";
        yield return "--checkpoint";
        yield return FullPath(Checkpoint);
        if (InputIds is { Length: > 0 }) { yield return "--input-ids"; yield return InputIds; }
        else if (Prompt is not null) { yield return "--prompt"; yield return Prompt; }
        else throw new BigModelException(BigModelErrorCode.InvalidArgument, "give Prompt or InputIds.");
        yield return "--max-new-tokens";
        yield return MaxNewTokens.ToString(CultureInfo.InvariantCulture);
        if (DeviceMap is { Length: > 0 }) { yield return "--device-map"; yield return DeviceMap; }
        if (MaxMemory is { Length: > 0 }) { yield return "--max-memory"; yield return MaxMemory; }
        if (DType is { Length: > 0 }) { yield return "--dtype"; yield return DType; }
        if (LinearKernel is { Length: > 0 }) { yield return "--linear-kernel"; yield return LinearKernel; }
        if (DiskAccess is { Length: > 0 }) { yield return "--disk-access"; yield return DiskAccess; }
    }

    private JsonElement ParseReply(string stdout, string stderr, int exitCode)
    {
        var line = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault(l => l.StartsWith('{'));
        if (line is null)
            throw new BigModelException(BigModelErrorCode.RunnerFailed, $"the model run ended with exit code {exitCode} and no answer: {stderr.Trim()}", FullPath(Checkpoint));
        using var doc = JsonDocument.Parse(line);
        var reply = doc.RootElement.Clone();
        if (reply.GetProperty("ok").GetBoolean()) return reply;
        var code = Enum.TryParse<BigModelErrorCode>(reply.GetProperty("id").GetString()!["BigModel.".Length..], out var c) ? c : BigModelErrorCode.RunnerFailed;
        throw new BigModelException(code, reply.GetProperty("message").GetString()!, reply.TryGetProperty("file", out var f) && f.ValueKind == JsonValueKind.String ? f.GetString() : null);
    }
}
