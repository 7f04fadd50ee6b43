using System.Diagnostics;
using System.IO.Compression;
using System.Reflection;
using System.Reflection.Metadata;
using System.Runtime.Versioning;
using System.Xml.Linq;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Packaging;

/// <summary>
/// Packs the library and the tool into a temporary folder as a user would, and checks what a consumer gets: the
/// package metadata, the readme, the XML docs, the symbols with SourceLink, and a <c>faultline</c> command installed
/// by <c>dotnet tool install</c> from that folder.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class PackageTests : IDisposable
{
    private const string ProjectUrl = "https://github.com/faultline-vm/faultline";
    // The CustomDebugInformation kind of a portable PDB's SourceLink JSON.
    private static readonly Guid s_sourceLinkKind = new("CC110556-A091-4D38-9FEC-25AB9A351A6A");

    private readonly string _folder = Directory.CreateTempSubdirectory("faultline-pack-test").FullName;

    [Fact]
    public void TheLibraryPackageDescribesItselfAndCarriesDocsAndSymbols()
    {
        string feed = Pack("src/Faultline/Faultline.csproj");
        string package = Directory.GetFiles(feed, "Faultline.*.nupkg").Single(p => !p.Contains(".Cli."));
        using ZipArchive zip = ZipFile.OpenRead(package);

        XElement metadata = Nuspec(zip, "Faultline.nuspec");
        Assert.Equal("Faultline", Field(metadata, "id"));
        XElement license = metadata.Elements().Single(e => e.Name.LocalName == "license");
        Assert.Equal("expression", (string?)license.Attribute("type"));
        Assert.Equal("MIT", license.Value);
        Assert.Equal(ProjectUrl, Field(metadata, "projectUrl"));
        Assert.Contains("virtual memory manager", Field(metadata, "description"));
        Assert.Equal("README.md", Field(metadata, "readme"));
        XElement repository = metadata.Elements().Single(e => e.Name.LocalName == "repository");
        Assert.Equal(ProjectUrl, (string?)repository.Attribute("url"));
        Assert.Matches("^[0-9a-f]{40}$", (string?)repository.Attribute("commit") ?? "");

        Assert.Contains("Faultline is a Linux-compatible virtual memory manager", ReadText(zip, "README.md"));
        Assert.Contains("T:Faultline.AddressSpace", ReadText(zip, "lib/net10.0/Faultline.xml"));
        Assert.NotNull(zip.GetEntry("lib/net10.0/Faultline.dll"));

        string symbols = Path.ChangeExtension(package, ".snupkg");
        using ZipArchive symbolZip = ZipFile.OpenRead(symbols);
        ZipArchiveEntry pdb = symbolZip.GetEntry("lib/net10.0/Faultline.pdb") ?? throw new InvalidDataException("no PDB in " + symbols);
        Assert.StartsWith("{\"documents\":{", SourceLink(pdb));
        Assert.Contains("https://raw.githubusercontent.com/faultline-vm/faultline/", SourceLink(pdb));
    }

    [Fact]
    public void TheToolInstallsAsFaultlineFromALocalFeed()
    {
        string feed = Pack("src/Faultline.Cli/Faultline.Cli.csproj");
        string package = Directory.GetFiles(feed, "Faultline.Cli.*.nupkg").Single();
        string version;
        using (ZipArchive zip = ZipFile.OpenRead(package))
        {
            XElement metadata = Nuspec(zip, "Faultline.Cli.nuspec");
            version = Field(metadata, "version");
            Assert.Equal("MIT", Field(metadata, "license"));
            Assert.Equal(ProjectUrl, Field(metadata, "projectUrl"));
            Assert.Contains(metadata.Descendants(), e => e.Name.LocalName == "packageType" && (string?)e.Attribute("name") == "DotnetTool");
            XElement command = XDocument.Parse(ReadText(zip, "tools/net10.0/any/DotnetToolSettings.xml")).Descendants("Command").Single();
            Assert.Equal("faultline", (string?)command.Attribute("Name"));
            // Native assets only for the platforms the tool runs on (Linux x86-64 and arm64).
            string[] natives = zip.Entries.Select(e => e.FullName).Where(n => n.Contains("/runtimes/", StringComparison.Ordinal)).ToArray();
            Assert.Contains("tools/net10.0/any/runtimes/linux-x64/native/libSkiaSharp.so", natives);
            Assert.All(natives, n => Assert.Matches("/runtimes/linux(-musl)?-(x64|arm64)/", n));
        }
        Assert.True(File.Exists(Path.ChangeExtension(package, ".snupkg")));

        // Only the local feed, and a package cache of its own: a package of the same version restored earlier must
        // not stand in for the one just packed.
        string config = Path.Combine(_folder, "nuget.config");
        File.WriteAllText(config, "<configuration><packageSources><clear /></packageSources></configuration>");
        string tools = Path.Combine(_folder, "tools");
        Run("dotnet", ["tool", "install", "--tool-path", tools, "--add-source", feed, "--configfile", config, "--version", version, "Faultline.Cli"],
            ("NUGET_PACKAGES", Path.Combine(_folder, "packages")));

        string help = Run(Path.Combine(tools, "faultline"), ["--help"]);
        Assert.Contains("faultline [command] [options]", help);
        Assert.Contains("bench", help);
        Assert.Contains("stress", help);

        // A short run from the installed tool draws its charts with the native assets the package kept.
        string png = Path.Combine(_folder, "chart.png");
        Run(Path.Combine(tools, "faultline"), ["bench", "--workload", "mmap1", "--path", "vma-lock", "--seconds", "0.02", "--repeat", "1",
            "--json", Path.Combine(_folder, "report.json"), "--svg", Path.Combine(_folder, "chart.svg"), "--png", png]);
        Assert.True(new FileInfo(png).Length > 1000, "the PNG chart is missing or empty");
    }

    [Fact]
    public void TheAssemblyIsMarkedLinuxOnly()
    {
        SupportedOSPlatformAttribute platform = typeof(AddressSpace).Assembly.GetCustomAttribute<SupportedOSPlatformAttribute>()
            ?? throw new InvalidDataException("no SupportedOSPlatform attribute");
        Assert.Equal("linux", platform.PlatformName);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    // dotnet pack of one project, in the configuration this test assembly was built in, into a folder of its own.
    private string Pack(string project)
    {
        string feed = Path.Combine(_folder, "feed");
        string configuration = typeof(PackageTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        Run("dotnet", ["pack", Path.Combine(RepositoryRoot.Path, project), "-c", configuration, "-o", feed, "--nologo"]);
        return feed;
    }

    private static string Run(string program, string[] arguments, params (string Name, string Value)[] environment)
    {
        var start = new ProcessStartInfo(program, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = RepositoryRoot.Path,
        };
        foreach ((string name, string value) in environment)
        {
            start.Environment[name] = value;
        }
        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start");
        Task<string> error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} ran over 5 minutes");
        }
        Assert.True(process.ExitCode == 0, $"{program} {string.Join(' ', arguments)} exited {process.ExitCode}:\n{output}\n{error.Result}");
        return output;
    }

    private static XElement Nuspec(ZipArchive zip, string name) =>
        XDocument.Parse(ReadText(zip, name)).Root!.Elements().Single(e => e.Name.LocalName == "metadata");

    private static string Field(XElement metadata, string name) =>
        metadata.Elements().SingleOrDefault(e => e.Name.LocalName == name)?.Value ?? throw new InvalidDataException($"nuspec has no <{name}>");

    private static string ReadText(ZipArchive zip, string name)
    {
        ZipArchiveEntry entry = zip.GetEntry(name) ?? throw new InvalidDataException($"package has no {name}");
        using var reader = new StreamReader(entry.Open());
        return reader.ReadToEnd();
    }

    private static string SourceLink(ZipArchiveEntry pdb)
    {
        var copy = new MemoryStream();
        using (Stream stream = pdb.Open())
        {
            stream.CopyTo(copy);
        }
        copy.Position = 0;
        using MetadataReaderProvider provider = MetadataReaderProvider.FromPortablePdbStream(copy);
        MetadataReader reader = provider.GetMetadataReader();
        foreach (CustomDebugInformationHandle handle in reader.CustomDebugInformation)
        {
            CustomDebugInformation information = reader.GetCustomDebugInformation(handle);
            if (reader.GetGuid(information.Kind) == s_sourceLinkKind)
            {
                return System.Text.Encoding.UTF8.GetString(reader.GetBlobBytes(information.Value));
            }
        }
        throw new InvalidDataException("the PDB has no SourceLink");
    }
}
