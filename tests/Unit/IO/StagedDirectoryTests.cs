using BigModel.Errors;
using BigModel.IO;
using BigModel.Tests.Support;

namespace BigModel.Tests.IO;

public sealed class StagedDirectoryTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Commits_into_place_and_tidies_up()
    {
        var destination = _dir.Combine("out");
        using (var staged = StagedDirectory.Begin(destination, replace: false))
        {
            Assert.StartsWith(".out.bigmodel-tmp-", Path.GetFileName(staged.StagingPath), StringComparison.Ordinal);
            Assert.True(File.Exists(_dir.Combine(".out.bigmodel-lock")));
            File.WriteAllText(Path.Combine(staged.StagingPath, "a.txt"), "new");
            Assert.False(Directory.Exists(destination));
            staged.Commit();
        }
        Assert.Equal("new", File.ReadAllText(Path.Combine(destination, "a.txt")));
        Assert.Equal(["out"], Directory.GetFileSystemEntries(_dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Disposing_without_commit_removes_the_staging_folder()
    {
        using (var staged = StagedDirectory.Begin(_dir.Combine("out"), replace: false))
            File.WriteAllText(Path.Combine(staged.StagingPath, "partial"), "x");
        Assert.Empty(Directory.GetFileSystemEntries(_dir.Path));
    }

    [Fact]
    public void Replaces_an_existing_folder_only_when_allowed()
    {
        var destination = _dir.Combine("out");
        Directory.CreateDirectory(destination);
        File.WriteAllText(Path.Combine(destination, "old.txt"), "old");
        Assert.Equal(BigModelErrorCode.DestinationExists,
            Assert.Throws<BigModelException>(() => StagedDirectory.Begin(destination, replace: false)).Code);
        using (var staged = StagedDirectory.Begin(destination, replace: true))
        {
            Assert.True(staged.ReplacesExisting);
            File.WriteAllText(Path.Combine(staged.StagingPath, "new.txt"), "new");
            staged.Commit();
        }
        Assert.Equal(["new.txt"], Directory.GetFileSystemEntries(destination).Select(Path.GetFileName));
        Assert.Equal(["out"], Directory.GetFileSystemEntries(_dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Puts_back_a_destination_that_a_killed_run_had_moved_aside()
    {
        var aside = _dir.Combine(".out.bigmodel-old-aaaaaaaaaaaa");
        Directory.CreateDirectory(aside);
        File.WriteAllText(Path.Combine(aside, "model.safetensors"), "previous");
        var staging = _dir.Combine(".out.bigmodel-tmp-bbbbbbbbbbbb");
        Directory.CreateDirectory(staging);
        Assert.Equal(2, StagedDirectory.FindLeftovers(_dir.Combine("out")).Count);

        // The destination is back before anything else happens, so without replace it now counts as existing.
        var e = Assert.Throws<BigModelException>(() => StagedDirectory.Begin(_dir.Combine("out"), replace: false));
        Assert.Equal(BigModelErrorCode.DestinationExists, e.Code);
        Assert.Equal("previous", File.ReadAllText(_dir.Combine("out", "model.safetensors")));
        Assert.Equal(["out"], Directory.GetFileSystemEntries(_dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void A_held_lock_turns_a_second_writer_away()
    {
        using var first = StagedDirectory.Begin(_dir.Combine("out"), replace: false);
        var e = Assert.Throws<BigModelException>(() => StagedDirectory.Begin(_dir.Combine("out"), replace: true));
        Assert.Equal(BigModelErrorCode.DestinationLocked, e.Code);
        Assert.Equal(BigModelErrorCategory.WriteConflict, e.Category);
        // Another destination in the same folder is independent.
        using var other = StagedDirectory.Begin(_dir.Combine("other"), replace: false);
    }

    [Fact]
    public void The_lock_is_free_again_after_dispose()
    {
        StagedDirectory.Begin(_dir.Combine("out"), replace: false).Dispose();
        Assert.False(File.Exists(_dir.Combine(".out.bigmodel-lock")));
        StagedDirectory.Begin(_dir.Combine("out"), replace: false).Dispose();
    }
}
