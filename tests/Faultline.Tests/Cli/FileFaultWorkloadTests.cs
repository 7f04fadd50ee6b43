using Faultline.Cli.Paths;
using Faultline.Cli.Running;
using Faultline.Cli.Workloads;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>
/// The file fault workloads (<c>page_fault2</c>, <c>page_fault3</c>, <c>file_read</c>): one iteration on a Faultline path
/// and on the kernel touches every page of the 128 MiB tmpfs file with no wrong stamp and leaves nothing mapped.
/// </summary>
public sealed class FileFaultWorkloadTests
{
    [Theory]
    [InlineData("page_fault2", "vma-lock")]
    [InlineData("page_fault3", "speculative")]
    [InlineData("file_read", "mmap-lock")]
    [InlineData("page_fault2", "kernel")]
    [InlineData("page_fault3", "kernel")]
    [InlineData("file_read", "kernel")]
    public void An_iteration_touches_every_page_and_unmaps(string name, string pathName)
    {
        IWorkload workload = WorkloadCatalog.ParseList(name).Single();
        PathKind path = PathNames.ParseList(pathName).Single();
        var shape = new RunShape(1, 0);
        using IMemoryTarget target = path == PathKind.Kernel
            ? new KernelTarget()
            : new FaultlineTarget(path, workload.TouchedBytes(shape) + (64L << 20));
        using ThreadMemory memory = target.AttachThread();
        var phase = new PhaseControl();
        phase.RequestStop();
        var stats = new WorkerStats();

        workload.Start(target, shape).Run(0, memory, phase, stats);

        Assert.Null(stats.Error);
        Assert.Equal((1, WorkloadSizes.RegionPages), (stats.Ops, stats.Faults));
        if (target is FaultlineTarget faultline)
        {
            Assert.Equal(0, faultline.Space.MapCount);
        }
    }
}
