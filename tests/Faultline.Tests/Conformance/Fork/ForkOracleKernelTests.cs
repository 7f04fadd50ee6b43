using Faultline.Host;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Conformance.Fork;

/// <summary>
/// The reference program alone: it builds, runs a script with real fork() and reports what the host kernel did,
/// in the format the comparer reads. These hold on any Linux host and say nothing about Faultline.
/// </summary>
public sealed class ForkOracleKernelTests
{
    private const ulong Page = Linux.PAGE_SIZE;
    private const int ReadWrite = Linux.PROT_READ | Linux.PROT_WRITE;

    private readonly ITestOutputHelper _output;

    public ForkOracleKernelTests(ITestOutputHelper output) => _output = output;

    [Fact]
    public void CopyOnWriteSeparatesParentAndChild()
    {
        ulong a = KernelForkRunner.RegionBase;
        var script = new ForkScript(a, 16 * Page, "kernel copy-on-write")
            .Map(0, a, 4 * Page, ReadWrite)
            .Write(0, a + 16, 7)
            .Fork(0)
            .Report(a + 16)
            .Write(1, a + 16, 9)
            .Report(a + 16, a + (8 * Page));

        ForkRun run = KernelForkRunner.Run(script);
        _output.WriteLine(string.Join("\n", run.Observations));

        string vma = $"{a:x}-{a + (4 * Page):x}";
        Assert.Equal("ok", run.Single(4, 1, "write", $"{a + 16:x}").Value);
        Assert.Equal("7", run.Single(3, 1, "value", $"{a + 16:x}").Value);
        Assert.Equal("7", run.Single(5, 0, "value", $"{a + 16:x}").Value);
        Assert.Equal("9", run.Single(5, 1, "value", $"{a + 16:x}").Value);
        Assert.Equal("SEGV_ACCERR", run.Single(5, 1, "value", $"{a + (8 * Page):x}").Value);
        Assert.Equal($"{vma}:rw-p,{a + (4 * Page):x}-{a + (16 * Page):x}:---p", run.Single(5, 1, "maps", "-").Value);
        // After the fork the one written page is mapped by both: shared, half of it in each Pss.
        Assert.Equal("4", run.Single(3, 0, "smaps", $"{vma}:Shared_Dirty").Value);
        Assert.Equal("2", run.Single(3, 0, "smaps", $"{vma}:Pss").Value);
        // The child's write copied it: each side now has a private dirty page.
        Assert.Equal("4", run.Single(5, 0, "smaps", $"{vma}:Private_Dirty").Value);
        Assert.Equal("0", run.Single(5, 1, "smaps", $"{vma}:Shared_Dirty").Value);
        Assert.Equal("4", run.Single(5, 1, "smaps", $"{vma}:Pss").Value);
    }

    [Fact]
    public void ReportsEveryComparedSmapsFieldForEveryVmaOfEveryLiveProcess()
    {
        ulong a = KernelForkRunner.RegionBase;
        var script = new ForkScript(a, 16 * Page, "kernel report shape")
            .Map(0, a, 2 * Page, Linux.PROT_READ)
            .Fork(0)
            .Fork(1)
            .Exit(1)
            .Munmap(2, a + (4 * Page), Page)
            .Report(a, a + (4 * Page));

        ForkRun run = KernelForkRunner.Run(script);

        string[] fields = ["Rss", "Anonymous", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Pss"];
        var reported = run.Observations.Where(o => o.Step == 5).ToList();
        Assert.Equal([0, 2], reported.Select(o => o.Proc).Distinct().Order());
        foreach (int proc in new[] { 0, 2 })
        {
            int vmas = run.Single(5, proc, "maps", "-").Value.Split(',').Length;
            Assert.Equal(proc == 0 ? 2 : 3, vmas);
            Assert.Equal(vmas * fields.Length, reported.Count(o => o.Proc == proc && o.Kind == "smaps"));
            Assert.All(fields, f => Assert.Equal(vmas, reported.Count(o => o.Proc == proc && o.Key.EndsWith(":" + f, StringComparison.Ordinal))));
        }
        Assert.Equal("SEGV_MAPERR", run.Single(5, 2, "value", $"{a + (4 * Page):x}").Value);
        Assert.Equal("SEGV_ACCERR", run.Single(5, 0, "value", $"{a + (4 * Page):x}").Value);
        Assert.Equal("ok", run.Single(3, 1, "exit", "-").Value);
    }

    [Fact]
    public void TheReferenceProgramProbesTheZeroPageAsThisProcessDoes()
    {
        ForkRun run = KernelForkRunner.Run(new ForkScript(KernelForkRunner.RegionBase, Page, "kernel facts"));

        _output.WriteLine(HostFacts.Current.Describe());
        Assert.Equal(HostFacts.Current.ReadFaultMapsZeroPage ? "1" : "0", run.Facts["zero_page_on_read"]);
    }

    [Fact]
    public void GeneratedScriptsRunOnTheKernel()
    {
        for (int seed = 1; seed <= 5; seed++)
        {
            ForkScript script = ForkScriptGenerator.Generate(seed);
            ForkRun run = KernelForkRunner.Run(script);

            Assert.Contains(script.Steps, s => s.Kind == ForkStepKind.Fork);
            int lastStep = script.Steps.Count - 1;
            Assert.Contains(run.Observations, o => o.Step == lastStep && o.Kind == "maps");
            Assert.All(script.Steps.Select((s, i) => (s, i)).Where(p => p.s.Kind != ForkStepKind.Report),
                p => Assert.Single(run.Observations, o => o.Step == p.i));
        }
    }
}
