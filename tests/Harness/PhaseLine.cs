namespace BigModel.Harness;

/// <summary>
/// The "phase ..." lines children print for their parent. With --pause-at, the child stops after printing the named
/// phase until its parent writes a line to its standard input, so a parent can act (start a second writer, read the
/// destination) at an exact point instead of racing a timer.
/// </summary>
internal static class PhaseLine
{
    public static void Write(string line, string? pauseAt)
    {
        Console.Out.WriteLine(line);
        Console.Out.Flush();
        if (pauseAt is not null && line == "phase " + pauseAt)
        {
            Console.Out.WriteLine("paused");
            Console.Out.Flush();
            Console.In.ReadLine();
        }
    }
}
