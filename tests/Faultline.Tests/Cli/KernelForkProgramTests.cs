using Faultline.Cli.Paths;
using Faultline.Cli.Workloads;
using Faultline.Host;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>
/// The kernel row of the fork workload: <c>Native/fork_bench.c</c> built with the host's compiler and run, its line
/// parsed; a program that cannot be built is one line, not a failure; the contents checks of the fork workloads.
/// </summary>
public sealed class KernelForkProgramTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("faultline-fork-bench-test").FullName;

    [Fact]
    public void TheReferenceForksAndEachSideCopiesOnWriteAndReadsItsOwnAndThePreForkData()
    {
        Assert.Null(KernelForkProgram.Problem);

        KernelForkFigures f = KernelForkProgram.Run(4);

        Assert.Equal(1024, f.Pages);
        Assert.Equal(0, f.Mismatches);
        Assert.True(f.ForkSeconds > 0);
        // Every write of the child hits a write-protected shared page; ru_minflt may add a stack page or two.
        Assert.InRange(f.ChildFaults, f.Pages, f.Pages + 16);
        Assert.InRange(f.ParentFaults, f.Pages, f.Pages + 16);
        Assert.True(f.ChildCpuSeconds > 0 && f.ChildSeconds > 0);
        if (f.ParentCopies >= 0)
        {
            // Linux reuses a page nobody else maps (wp_can_reuse_anon_folio): the child copied every page before the
            // parent wrote, so no fault of the parent copies.
            Assert.Equal(0, f.ParentCopies);
        }
    }

    [Fact]
    public void TheLineParsesAndAMissingFigureIsAnError()
    {
        KernelForkFigures f = KernelForkFigures.Parse(
            "pages=256 fork_ns=2000000 child_faults=256 child_cpu_ns=3000000 child_wall_ns=4000000 child_mismatches=1 " +
            "parent_faults=257 parent_cpu_ns=5000000 parent_wall_ns=6000000 parent_mismatches=2 parent_copied=-1");

        Assert.Equal(new KernelForkFigures(256, 0.002, 256, 0.003, 0.004, 257, 0.005, 0.006, -1, 3), f);
        Assert.Throws<FormatException>(() => KernelForkFigures.Parse("pages=256 fork_ns=2000000"));
        Assert.Throws<FormatException>(() => KernelForkFigures.Parse("pages=x"));
    }

    [Fact]
    public void ASourceThatDoesNotBuildGivesOneLineInsteadOfAnException()
    {
        string source = Path.Combine(_folder, "fork_bench.c");
        File.WriteAllText(source, $"int main(void) {{ return undeclared_{Guid.NewGuid():N}; }}\n");

        (string? executable, string? problem) = KernelForkProgram.TryBuild(source);

        Assert.Null(executable);
        Assert.NotNull(problem);
        Assert.StartsWith("kernel fork reference not run: ", problem);
        Assert.DoesNotContain('\n', problem);
    }

    [Fact]
    public void TheContentsCheckFindsEveryWrongWord()
    {
        const long pages = 8;
        nint region = LibC.MapAnonymousSmallPages(pages * WorkloadSizes.Page);
        try
        {
            using var memory = new KernelThreadMemory();
            ulong a = (ulong)region;
            memory.StampPages(a, pages, 11);
            memory.StampPages(a, pages, 22, word: 1);
            Assert.Equal(0, ForkPages.CountWrong(memory, a, pages, 11, 22, null));
            Assert.Equal(pages, ForkPages.CountWrong(memory, a, pages, 11, null, null));
            Assert.Equal(pages, ForkPages.CountWrong(memory, a, pages, 12, 22, null));

            memory.StoreLong(a + 3 * WorkloadSizes.Page + 16, 5);
            memory.StoreLong(a + 5 * WorkloadSizes.Page, 5);

            Assert.Equal(2, ForkPages.CountWrong(memory, a, pages, 11, 22, null));
        }
        finally
        {
            _ = LibC.MunmapErrno((ulong)region, pages * WorkloadSizes.Page);
        }
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
