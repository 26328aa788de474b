using BigModel.Errors;
using BigModel.Fixtures;
using BigModel.Fixtures.IO;
using BigModel.Tests.Support;

namespace BigModel.Tests.Fixtures;

public sealed class FixtureFolderTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Make(string name, string recipe, string content = "data")
    {
        var target = _dir.Combine(name);
        using var folder = FixtureFolder.Begin(target, recipe, force: false)!;
        File.WriteAllText(folder.Combine("a.txt"), content);
        folder.Commit();
        return target;
    }

    [Fact]
    public void Nothing_appears_until_commit_and_nothing_is_left_on_failure()
    {
        var target = _dir.Combine("out");
        using (var folder = FixtureFolder.Begin(target, "r", force: false)!)
        {
            File.WriteAllText(folder.Combine("a.txt"), "x");
            Assert.False(Directory.Exists(target));
        }
        Assert.Empty(Directory.GetFileSystemEntries(_dir.Path));
    }

    [Fact]
    public void A_complete_fixture_is_recognised_by_recipe_and_file_lengths()
    {
        var target = Make("out", "recipe-1");
        Assert.True(FixtureFolder.IsComplete(target, "recipe-1"));
        Assert.False(FixtureFolder.IsComplete(target, "recipe-2"));
        Assert.Null(FixtureFolder.Begin(target, "recipe-1", force: false));

        File.WriteAllText(Path.Combine(target, "a.txt"), "truncated-or-changed");
        Assert.False(FixtureFolder.IsComplete(target, "recipe-1"));
        File.Delete(Path.Combine(target, "a.txt"));
        Assert.False(FixtureFolder.IsComplete(target, "recipe-1"));
    }

    [Fact]
    public void Foreign_or_stale_folders_are_replaced_only_when_forced()
    {
        var target = _dir.Combine("out");
        Directory.CreateDirectory(target);
        File.WriteAllText(Path.Combine(target, "precious.txt"), "user data");
        var e = Assert.Throws<BigModelException>(() => FixtureFolder.Begin(target, "r", force: false));
        Assert.Equal(BigModelErrorCode.DestinationExists, e.Code);
        Assert.True(File.Exists(Path.Combine(target, "precious.txt")));

        using (var folder = FixtureFolder.Begin(target, "r", force: true)!)
        {
            File.WriteAllText(folder.Combine("a.txt"), "new");
            folder.Commit();
        }
        Assert.False(File.Exists(Path.Combine(target, "precious.txt")));
        Assert.True(FixtureFolder.IsComplete(target, "r"));
        Assert.Equal(["out"], Directory.GetFileSystemEntries(_dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void A_failed_replacement_puts_the_previous_fixture_back()
    {
        var target = Make("out", "r", "old data");
        int moves = 0;
        using (var folder = FixtureFolder.Begin(target, "r", force: true)!)
        {
            File.WriteAllText(folder.Combine("a.txt"), "new data");
            var e = Assert.Throws<BigModelException>(() => folder.Commit((from, to) =>
            {
                // The second rename, the new fixture into place, fails as a full or read-only disk would make it.
                if (++moves == 2) throw new IOException("simulated rename failure");
                Directory.Move(from, to);
            }));
            Assert.Equal(BigModelErrorCode.IoFailure, e.Code);
        }
        Assert.Equal("old data", File.ReadAllText(Path.Combine(target, "a.txt")));
        Assert.True(FixtureFolder.IsComplete(target, "r"));
        Assert.Equal(["out"], Directory.GetFileSystemEntries(_dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Command_line_reports_bad_options_as_typed_errors()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        Assert.Equal(2, FixturesCommand.Run(["llama", "--out", _dir.Combine("x"), "--hiden", "8"], output, error));
        Assert.Contains("BM1502", error.ToString());
        Assert.Contains("--hiden", error.ToString());
        Assert.Equal(2, FixturesCommand.Run(["llama", "--out", _dir.Combine("x"), "--dtype", "F8"], output, error));
        Assert.Equal(2, FixturesCommand.Run(["llama", "--out", _dir.Combine("x"), "--max-shard-size", "lots"], output, error));
        Assert.Equal(2, FixturesCommand.Run(["sparse", "--out", _dir.Combine("x")], output, error));
        Assert.Equal(1, FixturesCommand.Run(["bake"], output, error));
        Assert.False(Directory.Exists(_dir.Combine("x")));
    }

    [Fact]
    public void Command_line_generates_and_then_reuses()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        string[] args = ["llama", "--out", _dir.Combine("tiny"), "--hidden", "32", "--intermediate", "64", "--layers", "1", "--heads", "2", "--vocab", "64", "--tied", "--max-shard-size", "10KB"];
        Assert.Equal(0, FixturesCommand.Run(args, output, error));
        Assert.Contains("bytes", output.ToString());
        Assert.True(File.Exists(_dir.Combine("tiny", "model.safetensors.index.json")));
        Assert.Equal(0, FixturesCommand.Run(args, output, error));
        Assert.Contains("already complete", output.ToString());
        Assert.Equal("", error.ToString());
    }
}
