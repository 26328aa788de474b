using BigModel.Fixtures;

return FixturesCommand.Run(args, Console.Out, Console.Error);
