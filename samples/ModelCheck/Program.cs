// The models this application ships with are checked at build time by BigModel.Build (see ModelCheck.csproj).
Console.WriteLine("Models checked at build time.");
