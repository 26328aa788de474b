using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using BigModel.Architectures;
using BigModel.Checkpoints;
using BigModel.Errors;
using BigModel.Fixtures.IO;

namespace BigModel.Fixtures.Sparse;

/// <summary>
/// A checkpoint with exactly the tensors a config.json implies, whose data region is a hole: the safetensors header
/// is written and the file extended to its full length without writing data. Checkpoints the size of public models
/// (bert-base-cased, Llama-2-7B) then cost neither disk nor time, and every size computation can be tested on them.
/// The weights read as zeros.
/// </summary>
public static class SparseFixture
{
    public static FixtureResult Generate(string configPath, string destination, DType dtype = DType.F32, bool force = false)
    {
        var clock = Stopwatch.StartNew();
        var fullConfig = Path.GetFullPath(configPath);
        var config = ModelConfig.Load(fullConfig);
        var spec = ArchitectureCatalog.Require(config);
        var configBytes = File.ReadAllBytes(fullConfig);
        var recipe = $"sparse v1 dtype={dtype} config-sha256={Convert.ToHexStringLower(SHA256.HashData(configBytes))}";

        using var folder = FixtureFolder.Begin(destination, recipe, force);
        if (folder is null) return new FixtureResult(Path.GetFullPath(destination), true, 0, clock.Elapsed, []);

        var tensors = spec.TensorsFromConfig(config).Select(t => new TensorSpec(t.Name, dtype, t.Shape)).ToList();
        var layout = SafetensorsLayout.Create(tensors, Metadata);
        var path = folder.Combine("model.safetensors");
        try
        {
            using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)layout.Header.Length);
            stream.Write(prefix);
            stream.Write(layout.Header);
            stream.SetLength(layout.FileLength);
        }
        catch (IOException e)
        {
            throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, path, inner: e);
        }
        File.WriteAllBytes(folder.Combine("config.json"), configBytes);
        folder.Commit();
        var notes = new List<string>
        {
            $"{tensors.Count} tensors, {tensors.Sum(t => t.ElementCount):N0} parameters, {layout.DataLength:N0} data bytes ({dtype}), left as a hole",
        };
        return new FixtureResult(folder.Destination, false, 8 + layout.Header.Length + configBytes.Length, clock.Elapsed, notes);
    }

    private static readonly IReadOnlyDictionary<string, string> Metadata = new Dictionary<string, string> { ["format"] = "pt" };
}
