using Xunit;

namespace Faultline.Tests.Architecture;

/// <summary>
/// Keeps the library's folders layered: lower layers never call upward (<see cref="LayerRules.Layers"/>), and no inner
/// layer names the public surface. Scans the source of <c>src/Faultline</c>, so a new upward reference fails here.
/// </summary>
public class LayeringTests
{
    [Fact]
    public void NoLayerReferencesALayerAboveIt()
    {
        string root = SourceRoot();
        var violations = new List<string>();
        int files = 0;
        foreach (string file in Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}")
                || file.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))
            {
                continue;
            }
            files++;
            string? layer = LayerRules.LayerOfFile(root, file);
            violations.AddRange(LayerRules.Violations(layer, File.ReadAllText(file))
                .Select(v => $"{Path.GetRelativePath(root, file)}: {v}"));
        }
        Assert.True(files > 50, $"only {files} source files found under {root}");
        Assert.True(violations.Count == 0, string.Join("\n", violations));
    }

    [Fact]
    public void EveryFolderIsALayer()
    {
        string root = SourceRoot();
        string[] folders = Directory.GetDirectories(root).Select(Path.GetFileName).OfType<string>()
            .Where(f => f is not ("bin" or "obj")).ToArray();
        Assert.All(folders, folder => Assert.Contains(folder, LayerRules.Layers));
    }

    [Theory]
    [InlineData("Paging", "using Faultline.Areas;\nnamespace Faultline.Paging;")]
    [InlineData("Areas", "namespace Faultline.Areas;\nclass X { Faults.FaultResult r; }")]
    [InlineData("Physical", "namespace Faultline.Physical;\nclass X { Faultline.Mm.MemoryDescriptor d; }")]
    [InlineData("Faults", "namespace Faultline.Faults;\nclass X { void F(Cpu cpu) { } }")]
    [InlineData("Mm", "namespace Faultline.Mm;\nclass X { FaultlineOptions o = new(); }")]
    [InlineData("Syscalls", "namespace Faultline.Syscalls;\nclass X { object o = new AddressSpace(); }")]
    [InlineData("Areas", "namespace Faultline.Areas;\nclass X { bool b = o is Cpu; List<Cpu> l; }")]
    public void TheScannerSeesUpwardReferences(string layer, string source) =>
        Assert.NotEmpty(LayerRules.Violations(layer, source));

    [Theory]
    [InlineData("Faults", "using Faultline.Areas;\nnamespace Faultline.Faults;\n// a Cpu's AddressSpace is named in comments only\nclass X { string s = \"Cpu\"; Areas.Vma? v; }")]
    [InlineData(null, "using Faultline.Diagnostics;\nnamespace Faultline;\nclass X { Cpu? c; }")]
    [InlineData("Paging", "namespace Faultline.Paging;\nclass X { int p = PageGeometry.PageSize; AccessKind k; object o = vma.Backing.Name; }")]
    [InlineData("Faults", "namespace Faultline.Faults;\nclass X { public FaultCpu Cpu; X(FaultCpu cpu) { Cpu = cpu; Cpu.Counters.Add(1); } }")]
    public void TheScannerAcceptsDownwardReferencesAndComments(string? layer, string source) =>
        Assert.Empty(LayerRules.Violations(layer, source));

    private static string SourceRoot()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Faultline.slnx")))
            {
                return Path.Combine(dir.FullName, "src", "Faultline");
            }
        }
        throw new DirectoryNotFoundException("Faultline.slnx not found above " + AppContext.BaseDirectory);
    }
}
