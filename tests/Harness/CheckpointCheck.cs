using System.Security.Cryptography;
using BigModel.Checkpoints;
using BigModel.Errors;

namespace BigModel.Harness;

/// <summary>Decides whether a folder is a complete, valid copy of a source checkpoint's tensors.</summary>
internal static class CheckpointCheck
{
    /// <summary>SHA-256 of every tensor's bytes, by name.</summary>
    public static Dictionary<string, string> Digests(Checkpoint checkpoint) => Digests(checkpoint.Tensors);

    /// <summary>SHA-256 of every tensor's bytes, by name.</summary>
    public static Dictionary<string, string> Digests(IEnumerable<TensorInfo> tensors)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var buffer = new byte[4 << 20];
        foreach (var tensor in tensors)
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            TensorData.Read(tensor, chunk => hash.AppendData(chunk), buffer);
            result[tensor.Name] = Convert.ToHexString(hash.GetHashAndReset());
        }
        return result;
    }

    /// <summary>One SHA-256 over the names, dtypes, shapes and bytes of <paramref name="tensors"/>, in the order given.</summary>
    public static string Digest(IEnumerable<TensorInfo> tensors)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[4 << 20];
        foreach (var tensor in tensors)
        {
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes($"{tensor.Name}|{tensor.DType}|{tensor.ShapeText}|"));
            TensorData.Read(tensor, chunk => hash.AppendData(chunk), buffer);
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    /// <summary>Null when <paramref name="folder"/> opens cleanly and holds exactly the expected tensors; else the problem.</summary>
    public static string? Problem(string folder, Dictionary<string, string> expected, out int shards)
    {
        shards = 0;
        Checkpoint checkpoint;
        try
        {
            checkpoint = Checkpoint.Open(folder);
        }
        catch (BigModelException e)
        {
            return $"does not open: {e.Message}";
        }
        shards = checkpoint.Files.Count;
        if (checkpoint.Warnings.Count > 0) return "inconsistent: " + checkpoint.Warnings[0];
        var actual = Digests(checkpoint);
        if (actual.Count != expected.Count) return $"{actual.Count} tensors instead of {expected.Count}";
        foreach (var (name, digest) in expected)
        {
            if (!actual.TryGetValue(name, out var other)) return $"tensor {name} is missing";
            if (other != digest) return $"tensor {name} has different bytes";
        }
        return null;
    }
}
