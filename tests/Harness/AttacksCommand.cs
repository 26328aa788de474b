using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Checkpoints.PyTorch;
using BigModel.DeviceMaps;
using BigModel.Errors;
using BigModel.Memory;

namespace BigModel.Harness;

/// <summary>
/// Runs the committed pickle and zip attack corpus (tests/Unit/fixtures/pytorch/attacks/attacks.json) and a set of
/// path-escape and resource-limit probes built on the spot, and prints what BigModel answered to each as Markdown
/// tables: the tables of docs/reliability.md are this command's output.
/// </summary>
internal static class AttacksCommand
{
    public static int Run(Arguments args)
    {
        var fixtures = Path.GetFullPath(args.Option("fixtures") ?? "tests/Unit/fixtures/pytorch/attacks");
        var stories = args.Option("stories") ?? Environment.GetEnvironmentVariable("BIGMODEL_STORIES260K") ?? "/work/shared/models/stories260K";
        int failures = Corpus(fixtures);
        Console.WriteLine();
        failures += Probes(Directory.Exists(stories) ? stories : null);
        return failures == 0 ? 0 : 1;
    }

    private static int Corpus(string fixtures)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(fixtures, "attacks.json")));
        Console.WriteLine("| archive | expected | observed | culprit named | marker file | message (without the file name) |");
        Console.WriteLine("|---|---|---|---|---|---|");
        int failures = 0;
        foreach (var attack in doc.RootElement.EnumerateArray())
        {
            var file = attack.GetProperty("file").GetString()!;
            var expected = attack.GetProperty("code").GetString()!;
            var mentions = attack.GetProperty("mentions").EnumerateArray().Select(m => m.GetString()!).ToList();
            var marker = attack.GetProperty("marker").ValueKind == JsonValueKind.Null ? null : attack.GetProperty("marker").GetString();
            var limits = attack.TryGetProperty("limits", out var l) ? new PyTorchLimits { MaxPickleBytes = l.GetProperty("MaxPickleBytes").GetInt64() } : null;
            if (marker is not null && File.Exists(marker)) File.Delete(marker);
            var (observed, message) = Observe(() => PyTorchCheckpointReader.ReadTensors(Path.Combine(fixtures, file), limits), out var full);
            bool named = observed is not null && mentions.All(full.Contains);
            string markerText = marker is null ? "—" : File.Exists(marker) ? "CREATED" : "not created";
            bool ok = observed?.ToString() == expected && named && markerText != "CREATED";
            if (!ok) failures++;
            Console.WriteLine($"| {file} | {expected} | {Code(observed)} | {(named ? string.Join(", ", mentions.Select(Cell)) : "NO")} | {markerText} | {Cell(Clip(message))} |");
        }
        return failures;
    }

    private static int Probes(string? stories)
    {
        var work = Path.Combine(Path.GetTempPath(), "bigmodel-probes-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(work);
        int failures = 0;
        try
        {
            Console.WriteLine("| probe | observed | message (without the file name) |");
            Console.WriteLine("|---|---|---|");
            void Probe(string what, BigModelErrorCode expected, Action action)
            {
                var (observed, message) = Observe(action);
                if (observed != expected) failures++;
                Console.WriteLine($"| {Cell(what)} | {Code(observed)}{(observed == expected ? "" : $" (expected {expected})")} | {Cell(Clip(message))} |");
            }

            var outside = Path.Combine(work, "outside.safetensors");
            WriteSafetensors(outside, """{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4);
            foreach (var (what, name) in new[]
            {
                ("index weight_map entry with '..'", "../outside.safetensors"),
                ("index weight_map entry nested '..'", "sub/../../outside.safetensors"),
                ("index weight_map absolute path", outside),
                ("index weight_map drive letter", "C:\\Windows\\evil.safetensors"),
                ("index weight_map backslash '..'", "..\\outside.safetensors"),
            })
            {
                var folder = Fresh(work, "index");
                File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"),
                    JsonSerializer.Serialize(new { metadata = new { }, weight_map = new Dictionary<string, string> { ["x"] = name } }));
                Probe(what, BigModelErrorCode.IndexPathEscapes, () => Checkpoint.Open(folder));
            }
            {
                var folder = Fresh(work, "index");
                File.CreateSymbolicLink(Path.Combine(folder, "model-00001-of-00001.safetensors"), outside);
                File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), """{"metadata":{},"weight_map":{"x":"model-00001-of-00001.safetensors"}}""");
                Probe("index shard that is a symbolic link out of the folder", BigModelErrorCode.IndexPathEscapes, () => Checkpoint.Open(folder));
            }

            var header = Path.Combine(work, "header.safetensors");
            var bytes = new byte[16];
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, 200_000_000);
            File.WriteAllBytes(header, bytes);
            Probe("safetensors header length of 200,000,000 bytes (limit 100,000,000)", BigModelErrorCode.SafetensorsHeaderTooLarge, () => SafetensorsHeader.Read(header));

            var rank = Path.Combine(work, "rank.safetensors");
            WriteSafetensors(rank, $"{{\"x\":{{\"dtype\":\"F32\",\"shape\":[{string.Join(",", Enumerable.Repeat(1, 65))}],\"data_offsets\":[0,4]}}}}", 4);
            Probe("safetensors tensor of rank 65 (limit 64)", BigModelErrorCode.SafetensorsRankTooLarge, () => SafetensorsHeader.Read(rank));

            var many = Path.Combine(work, "many.safetensors");
            var json = new StringBuilder("{");
            for (int i = 0; i <= 1_000_000; i++) json.Append(i == 0 ? "" : ",").Append("\"t").Append(i).Append("\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}");
            WriteSafetensors(many, json.Append('}').ToString(), 0);
            Probe("safetensors header declaring 1,000,001 tensors (limit 1,000,000)", BigModelErrorCode.SafetensorsTooManyTensors, () => SafetensorsHeader.Read(many));

            var huge = Path.Combine(work, "huge.safetensors");
            WriteSafetensors(huge, """{"x":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}""", 4);
            Probe("safetensors shape whose element count overflows 64 bits", BigModelErrorCode.SafetensorsInvalidShape, () => SafetensorsHeader.Read(huge));

            var config = Path.Combine(Fresh(work, "config"), "config.json");
            File.WriteAllText(config, "{\"x\":\"" + new string('a', 17 << 20) + "\"}");
            Probe("config.json of 17 MiB (limit 16 MiB)", BigModelErrorCode.ConfigInvalidValue, () => ModelConfig.Load(config));

            var deep = Path.Combine(Fresh(work, "config"), "config.json");
            File.WriteAllText(deep, new string('[', 100_000) + new string(']', 100_000));
            Probe("config.json nested 100,000 deep", BigModelErrorCode.ConfigNotJson, () => ModelConfig.Load(deep));

            var map = Path.Combine(work, "device_map.json");
            File.WriteAllText(map, "{\"" + string.Join(".", Enumerable.Repeat("m", 300)) + "\": \"cpu\"}");
            Probe("device map module name of 300 segments (limit 256)", BigModelErrorCode.InvalidDeviceMap, () => DeviceMap.Load(map));

            if (stories is not null)
            {
                var memory = ModelMemoryEstimator.Estimate(Checkpoint.Open(stories)).First();
                Probe($"stories260K in a 512 KiB budget", BigModelErrorCode.MemoryBudgetExceeded, () => memory.ThrowIfOver(512 << 10, "512KiB"));
            }
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
        return failures;
    }

    private static (BigModelErrorCode? Code, string Detail) Observe(Action action) => Observe(action, out _);

    /// <param name="full">The whole message, with the file, offset and tensor it names.</param>
    private static (BigModelErrorCode? Code, string Detail) Observe(Action action, out string full)
    {
        try
        {
            action();
            full = "";
            return (null, "accepted");
        }
        catch (BigModelException e)
        {
            full = e.Message;
            return (e.Code, e.Detail);
        }
        catch (Exception e)
        {
            full = "";
            return (null, $"UNTYPED {e.GetType().Name}: {e.Message}");
        }
    }

    private static string Fresh(string work, string name)
    {
        var folder = Path.Combine(work, name + "-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(folder);
        return folder;
    }

    private static void WriteSafetensors(string path, string header, int dataBytes)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        File.WriteAllBytes(path, bytes);
    }

    private static string Code(BigModelErrorCode? code) =>
        code is { } c ? $"BM{(int)c:D4} {c}" : "none";

    private static string Clip(string text) => text.Length <= 150 ? text : text[..147] + "...";

    private static string Cell(string text) => text.Replace("|", "\\|").Replace("\n", " ").Replace("`", "'");
}
