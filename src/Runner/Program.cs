using System.Globalization;
using System.Text.Json;
using BigModel.Checkpoints;
using BigModel.DeviceMaps;
using BigModel.Errors;
using BigModel.Inference;

// BigModel.Runner: one generation or embedding run, answered as one JSON object on standard output.
//   generate --checkpoint PATH (--prompt TEXT | --input-ids 1,2,3) [--max-new-tokens N] [--temperature T] [--top-k K]
//            [--top-p P] [--seed S] [--device-map FILE|auto|sequential|balanced|balanced_low_0] [--max-memory 0=8GiB;cpu=16GiB]
//            [--dtype float16] [--no-prefetch] [--linear-kernel auto|libtorch|native]
//            [--disk-access auto|mapped|copied|direct]
//   embed --checkpoint PATH --text TEXT [--text TEXT ...] [same placement options]
// Exit code 0 with {"ok":true,...}; 1 with {"ok":false,"code":"BM1907","id":"BigModel.X","message":...,"file":...}.
var output = Console.Out;
try
{
    var command = args.Length > 0 ? args[0] : throw Usage("a command: generate or embed");
    var options = Parse(args.AsSpan(1));
    var checkpoint = Checkpoint.Open(Single(options, "checkpoint"));
    var dtype = options.TryGetValue("dtype", out var d) ? DTypes.Parse(d[0]) : (DType?)null;
    int maxNewTokens = options.TryGetValue("max-new-tokens", out var m) ? Int(m[0], "max-new-tokens") : 32;
    // Tokens the run holds, for the KV cache reserve when memory is measured: a prompt has at most one token per character.
    int context = command != "generate" ? checkpoint.Config?.MaxPositionEmbeddings ?? 512
        : maxNewTokens + (options.TryGetValue("input-ids", out var given) ? given[0].Split(',').Length : options.TryGetValue("prompt", out var pr) ? pr[0].Length : 0);
    var run = new InferenceOptions
    {
        DType = dtype,
        Prefetch = !options.ContainsKey("no-prefetch"),
        LinearKernel = options.TryGetValue("linear-kernel", out var lk) ? Kernel(lk[0]) : LinearKernel.Auto,
        DiskAccess = options.TryGetValue("disk-access", out var da) ? Access(da[0]) : DiskAccess.Auto,
    };
    var map = InferencePlacement.Resolve(checkpoint, null, options.TryGetValue("device-map", out var dm) ? dm[0] : null,
        options.TryGetValue("max-memory", out var mm) ? MaxMemory.ParseText(mm[0]) : null, dtype, context, run.BlocksAhead);
    using var session = InferenceSession.Open(checkpoint, map.ToPlacement(), run with { AvailableHostBytes = InferencePlacement.AvailableHostBytes() });
    object result = command switch
    {
        "generate" => Generate(session, options, maxNewTokens),
        "embed" => Embed(session, options),
        _ => throw Usage($"a known command, not '{command}'"),
    };
    output.WriteLine(JsonSerializer.Serialize(result));
    return 0;
}
catch (BigModelException e)
{
    output.WriteLine(JsonSerializer.Serialize(new { ok = false, code = e.BuildCode, id = e.ErrorId, message = e.Message, file = e.File }));
    return 1;
}

static object Generate(InferenceSession session, Dictionary<string, List<string>> options, int maxNewTokens)
{
    var generation = new GenerationOptions
    {
        MaxNewTokens = maxNewTokens,
        Temperature = options.TryGetValue("temperature", out var t) ? Double(t[0], "temperature") : 0,
        TopK = options.TryGetValue("top-k", out var k) ? Int(k[0], "top-k") : 0,
        TopP = options.TryGetValue("top-p", out var p) ? Double(p[0], "top-p") : 1,
        Seed = options.TryGetValue("seed", out var s) ? ulong.Parse(s[0], CultureInfo.InvariantCulture) : null,
    };
    GenerationResult result;
    if (options.TryGetValue("input-ids", out var ids))
        result = session.Generate(ids[0].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(i => Int(i, "input-ids")).ToList(), generation);
    else
        result = session.Generate(Single(options, "prompt"), generation);
    return new
    {
        ok = true,
        text = result.Text,
        inputIds = result.InputIds,
        generatedIds = result.GeneratedIds,
        stopReason = result.StopReason.ToString(),
        seed = result.Seed,
        firstTokenMs = result.Timings.FirstToken.TotalMilliseconds,
        decodeTokensPerSecond = result.Timings.DecodeTokensPerSecond,
        loadMs = session.LoadReport.LoadTime.TotalMilliseconds,
    };
}

static object Embed(InferenceSession session, Dictionary<string, List<string>> options)
{
    var texts = options.TryGetValue("text", out var list) ? list : throw Usage("--text");
    var result = session.Embed(texts);
    return new { ok = true, dimensions = result.Dimensions, vectors = result.Vectors, tokenCounts = result.TokenCounts };
}

static Dictionary<string, List<string>> Parse(ReadOnlySpan<string> args)
{
    var options = new Dictionary<string, List<string>>(StringComparer.Ordinal);
    for (int i = 0; i < args.Length; i++)
    {
        if (!args[i].StartsWith("--", StringComparison.Ordinal)) throw Usage($"an option, not '{args[i]}'");
        var name = args[i][2..];
        if (name == "no-prefetch")
        {
            options[name] = [];
            continue;
        }
        if (i + 1 >= args.Length) throw Usage($"a value after --{name}");
        if (!options.TryGetValue(name, out var values)) options[name] = values = [];
        values.Add(args[++i]);
    }
    return options;
}

static LinearKernel Kernel(string text) => Enum.TryParse<LinearKernel>(text, ignoreCase: true, out var kernel) && Enum.IsDefined(kernel)
    ? kernel
    : throw Usage($"auto, libtorch or native for --linear-kernel, not '{text}'");

static DiskAccess Access(string text) => Enum.TryParse<DiskAccess>(text, ignoreCase: true, out var access) && Enum.IsDefined(access)
    ? access
    : throw Usage($"auto, mapped, copied or direct for --disk-access, not '{text}'");

static string Single(Dictionary<string, List<string>> options, string name) =>
    options.TryGetValue(name, out var values) && values.Count == 1 ? values[0] : throw Usage($"exactly one --{name}");

static int Int(string text, string name) =>
    int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : throw Usage($"a whole number for --{name}, not '{text}'");

static double Double(string text, string name) =>
    double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : throw Usage($"a number for --{name}, not '{text}'");

static BigModelException Usage(string what) => new(BigModelErrorCode.InvalidArgument, $"BigModel.Runner expects {what}.");
