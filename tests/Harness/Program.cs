using BigModel.Errors;
using BigModel.Harness;

// Exit codes: 0 success, 1 a check failed, 2 a BigModel error (split, offload, digest), 3 skipped (prerequisite missing), 64 usage.
try
{
    if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
    {
        Console.WriteLine(Usage.Text);
        return args.Length == 0 ? 64 : 0;
    }
    var arguments = new Arguments(args[1..]);
    return args[0] switch
    {
        "generate" => GenerateCommand.Run(arguments),
        "split" => SplitCommand.Run(arguments),
        "offload" => OffloadCommand.Run(arguments),
        "digest" => DigestCommand.Run(arguments),
        "attacks" => AttacksCommand.Run(arguments),
        "bench" => BenchCommand.Run(arguments),
        "kill-trials" => KillTrials.Run(arguments),
        "disk-full" => DiskFullTrial.Run(arguments),
        "heap-trim" => HeapTrimCommand.Run(arguments),
        _ => throw new UsageException($"unknown command '{args[0]}'."),
    };
}
catch (UsageException e)
{
    Console.Error.WriteLine(e.Message);
    Console.Error.WriteLine(Usage.Text);
    return 64;
}
catch (BigModelException e)
{
    Console.Error.WriteLine($"{e.ErrorId}: {e.Message}");
    return 2;
}
