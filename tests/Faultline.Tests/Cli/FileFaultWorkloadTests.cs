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

    [Fact]
    public void A_worker_past_the_faulting_threads_churns_and_faults_nothing()
    {
        IWorkload workload = WorkloadCatalog.ParseList("page_fault3").Single();
        var shape = new RunShape(1, 1);
        using var target = new FaultlineTarget(PathKind.VmaLock, workload.TouchedBytes(shape) + (64L << 20));
        using ThreadMemory memory = target.AttachThread();
        var phase = new PhaseControl();
        var stats = new WorkerStats();
        var churn = new Thread(() => workload.Start(target, shape).Run(1, memory, phase, stats));

        churn.Start();
        SpinWait.SpinUntil(() => Volatile.Read(ref stats.ChurnOps) >= 40, TimeSpan.FromSeconds(30));
        phase.RequestStop();
        churn.Join();

        Assert.True(workload.UsesChurn);
        Assert.Equal(0, workload.DefaultChurn);
        Assert.Null(stats.Error);
        Assert.True(stats.ChurnOps >= 40);
        Assert.Equal((0L, 0L), (stats.Ops, stats.Faults));
        Assert.Equal(0, target.Space.MapCount);
    }

    [Fact]
    public void Fault_around_off_takes_a_read_fault_for_every_page()
    {
        long Faults(PathKind path)
        {
            IWorkload workload = WorkloadCatalog.ParseList("file_read").Single();
            var shape = new RunShape(1, 0);
            using var target = new FaultlineTarget(path, workload.TouchedBytes(shape) + (64L << 20));
            using ThreadMemory memory = target.AttachThread();
            var phase = new PhaseControl();
            phase.RequestStop();
            var stats = new WorkerStats();
            workload.Start(target, shape).Run(0, memory, phase, stats);
            Assert.Null(stats.Error);
            return target.Space.GetCounters()["pgfault"];
        }

        // One iteration stamps the file through a writable shared mapping (a fault a page either way), then reads it.
        long pages = WorkloadSizes.RegionPages;
        long without = Faults(PathKind.VmaLockNoFaultAround);
        long with = Faults(PathKind.VmaLock);
        Assert.True(without >= 2 * pages, $"fault-around off: {without} faults for {pages} pages stamped and read");
        Assert.True(with < pages + pages / 8, $"fault-around on: {with} faults for {pages} pages stamped and read");
    }
}
