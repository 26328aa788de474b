using System.Text.Json;
using System.Text.Json.Nodes;
using BigModel.Errors;

namespace BigModel.Fixtures.IO;

/// <summary>
/// Builds a fixture folder atomically: files are written into a temporary folder beside the destination, a
/// marker recording the recipe and every file's length is added, and the folder is renamed into place at the end.
/// A destination whose marker matches the recipe and whose files are all present at their recorded lengths is
/// complete, and is left alone unless forced.
/// </summary>
public sealed class FixtureFolder : IDisposable
{
    /// <summary>The marker file's name; Checkpoint.Open ignores it like any file that is not weights or config.</summary>
    public const string MarkerFileName = ".bigmodel-fixture.json";

    private bool _committed;

    private FixtureFolder(string destination, string recipe, string temporary)
    {
        Destination = destination;
        Recipe = recipe;
        Path = temporary;
    }

    /// <summary>The final folder.</summary>
    public string Destination { get; }

    /// <summary>What was asked for, canonically written (command, options, generator version).</summary>
    public string Recipe { get; }

    /// <summary>The temporary folder to write into.</summary>
    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    /// <summary>True when <paramref name="destination"/> already holds a complete fixture made from <paramref name="recipe"/>.</summary>
    public static bool IsComplete(string destination, string recipe)
    {
        var marker = System.IO.Path.Combine(destination, MarkerFileName);
        if (!File.Exists(marker)) return false;
        try
        {
            var node = JsonNode.Parse(File.ReadAllText(marker));
            if (node?["recipe"]?.GetValue<string>() != recipe) return false;
            if (node["files"] is not JsonObject files || files.Count == 0) return false;
            foreach (var (name, length) in files)
            {
                var file = new FileInfo(System.IO.Path.Combine(destination, name));
                if (!file.Exists || length is null || file.Length != length.GetValue<long>()) return false;
            }
            return true;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>
    /// Starts a fixture, or returns null when the destination is already complete and <paramref name="force"/> is off.
    /// A destination that exists but is not a complete fixture of this recipe is only replaced when forced.
    /// </summary>
    public static FixtureFolder? Begin(string destination, string recipe, bool force)
    {
        var full = System.IO.Path.GetFullPath(destination.TrimEnd('/', '\\'));
        if (!force && IsComplete(full, recipe)) return null;
        if (!force && Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            throw new BigModelException(BigModelErrorCode.DestinationExists,
                "the folder exists and is not a complete fixture of the requested kind; pass --force to replace it.", full);
        if (File.Exists(full))
            throw new BigModelException(BigModelErrorCode.DestinationExists, "a file is in the way of the output folder.", full);
        var parent = System.IO.Path.GetDirectoryName(full)!;
        var temporary = System.IO.Path.Combine(parent, $".{System.IO.Path.GetFileName(full)}.tmp-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..12]}");
        try
        {
            Directory.CreateDirectory(parent);
            Directory.CreateDirectory(temporary);
        }
        catch (IOException e)
        {
            throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, temporary, inner: e);
        }
        return new FixtureFolder(full, recipe, temporary);
    }

    /// <summary>
    /// Writes the marker and renames the folder into place, replacing whatever was there. Should the last rename fail,
    /// the folder that was there is put back.
    /// </summary>
    public void Commit() => Commit(Directory.Move);

    /// <summary><see cref="Commit()"/> with the rename given, so tests can make it fail.</summary>
    internal void Commit(Action<string, string> moveDirectory)
    {
        var files = new JsonObject();
        foreach (var file in Directory.EnumerateFiles(Path, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            files[System.IO.Path.GetRelativePath(Path, file).Replace('\\', '/')] = new FileInfo(file).Length;
        var marker = new JsonObject { ["recipe"] = Recipe, ["files"] = files };
        File.WriteAllText(Combine(MarkerFileName), marker.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        bool restored = false;
        try
        {
            string? old = null;
            if (Directory.Exists(Destination))
            {
                old = Path + ".old";
                moveDirectory(Destination, old);
            }
            try
            {
                moveDirectory(Path, Destination);
            }
            catch (Exception) when (old is not null && !Directory.Exists(Destination))
            {
                // Leave the previous fixture where it was rather than lose it; the new one is deleted on dispose.
                try
                {
                    moveDirectory(old, Destination);
                    restored = true;
                }
                catch (Exception restore) when (restore is IOException or UnauthorizedAccessException) { }
                throw;
            }
            _committed = true;
            if (old is not null) Directory.Delete(old, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Another process may have completed the same fixture meanwhile; theirs is as good as ours. The fixture put
            // back after a failed replacement is not that: the replacement was asked for and did not happen.
            if (!restored && IsComplete(Destination, Recipe)) return;
            throw new BigModelException(BigModelErrorCode.IoFailure, e.Message, Destination, inner: e);
        }
    }

    public void Dispose()
    {
        if (_committed) return;
        try
        {
            if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
