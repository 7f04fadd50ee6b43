using Faultline.Cli.Paths;
using Faultline.Cli.Running;
using Faultline.Cli.Workloads;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>
/// The userfault workload: one iteration on each Faultline path resolves every page through the channel and reads
/// the stamps back; the kernel row's program (<c>Native/uffd_bench.c</c>) runs where userfaultfd works here, or gives
/// one line saying why not; its line parses.
/// </summary>
public sealed class UserfaultWorkloadTests
{
    [Theory]
    [InlineData("mmap-lock")]
    [InlineData("speculative")]
    [InlineData("vma-lock")]
    public void AnIterationResolvesEveryPageThroughTheChannel(string pathName)
    {
        PathKind path = PathNames.ParseList(pathName).Single();
        var workload = new UserfaultWorkload(pages: 64);
        using var target = new FaultlineTarget(path, 16 << 20);
        using ThreadMemory memory = target.AttachThread();
        var phase = new PhaseControl();
        phase.RequestStop();
        var stats = new WorkerStats();

        workload.Start(target, new RunShape(1, 0)).Run(0, memory, phase, stats);

        Assert.Null(stats.Error);
        Assert.Equal((1, 64), (stats.Ops, stats.Faults));
        Assert.True(stats.FaultSeconds > 0);
        Assert.Equal(0, target.Space.ResidentPages);
        Assert.Equal(0, target.Space.MapCount);
    }

    [Fact]
    public void TheKernelReferenceRoundTripsEveryPageOrSaysWhyItCannot()
    {
        if (KernelUserfaultProgram.Problem is { } problem)
        {
            Assert.StartsWith("kernel userfault reference not run: ", problem);
            Assert.Equal(problem, new UserfaultWorkload().Unavailable(PathKind.Kernel));
            return;
        }
        KernelUserfaultFigures f = KernelUserfaultProgram.Run(256);
        Assert.Equal((256L, 256L, 0L), (f.Pages, f.Handled, f.Mismatches));
        Assert.True(f.WallSeconds > 0);
        Assert.Null(new UserfaultWorkload().Unavailable(PathKind.Kernel));
    }

    [Fact]
    public void TheLineParsesAndAMissingFigureIsAnError()
    {
        KernelUserfaultFigures f = KernelUserfaultFigures.Parse("pages=8 wall_ns=4000 cpu_ns=1000 handled=8 mismatches=0 user_mode_only=1");
        Assert.Equal(new KernelUserfaultFigures(8, 4e-6, 1e-6, 8, 0, true), f);
        Assert.Throws<FormatException>(() => KernelUserfaultFigures.Parse("pages=8 wall_ns=4000"));
    }
}
