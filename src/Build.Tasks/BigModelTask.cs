using BigModel.Errors;
using BigModel.IO;
using Microsoft.Build.Framework;
using Task = Microsoft.Build.Utilities.Task;

namespace BigModel.Build.Tasks;

/// <summary>
/// Base of every BigModel task: runs the work and reports BigModel errors as MSBuild errors with their BM code,
/// file and help keyword, so a build log points at the checkpoint and the documented code.
/// </summary>
public abstract class BigModelTask : Task
{
    public sealed override bool Execute()
    {
        try
        {
            Run();
        }
        catch (BigModelException e)
        {
            LogError(e);
        }
        catch (Exception e) when (FileErrors.IsFileSystemError(e))
        {
            // A file the task writes itself (an output, its stamp) is as much a BigModel error as one it reads.
            LogError(FileErrors.Map(e, FileOf(e)));
        }
        return !Log.HasLoggedErrors;
    }

    protected abstract void Run();

    /// <summary>The file a file system exception is about, where .NET says (FileNotFoundException names it).</summary>
    private static string FileOf(Exception e) => e is FileNotFoundException { FileName: { Length: > 0 } name } ? name : "";

    protected void LogError(BigModelException e) =>
        Log.LogError(subcategory: "BigModel", errorCode: e.BuildCode, helpKeyword: e.ErrorId, file: e.File ?? "",
            lineNumber: 0, columnNumber: 0, endLineNumber: 0, endColumnNumber: 0, message: e.Message);

    protected void LogWarning(BigModelErrorCode code, string message, string? file = null) =>
        Log.LogWarning(subcategory: "BigModel", warningCode: "BM" + ((int)code).ToString("D4", System.Globalization.CultureInfo.InvariantCulture),
            helpKeyword: "BigModel." + code, file: file ?? "", lineNumber: 0, columnNumber: 0, endLineNumber: 0, endColumnNumber: 0, message: message);

    /// <summary>Full path of an item (MSBuild resolves it against the project that declared it).</summary>
    protected static string FullPath(ITaskItem item) => item.GetMetadata("FullPath") is { Length: > 0 } p ? p : Path.GetFullPath(item.ItemSpec);
}
