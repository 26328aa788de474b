namespace BigModel.Sharding;

/// <summary>A non-weight file of the source folder (config, tokenizer, generation config, README...) copied beside the new shards.</summary>
/// <param name="RelativePath">Path below the source folder, with '/' separators.</param>
/// <param name="SourcePath">Absolute path of the file to read (a link's target when the folder holds links).</param>
/// <param name="Length">Size in bytes when planned.</param>
/// <param name="UpdatesDType">True for config.json when the dtype changes: its torch_dtype is rewritten.</param>
public sealed record CompanionFile(string RelativePath, string SourcePath, long Length, bool UpdatesDType);
