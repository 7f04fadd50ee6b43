using Faultline.Cli.Paths;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// <c>page_fault1</c> over <c>MADV_HUGEPAGE</c> memory: each thread maps 128 MiB at a 2 MiB-aligned address, advises
/// huge pages, writes every 4 KiB page once, reads the stamps back, unmaps; loop. With transparent huge pages each
/// 2 MiB takes one fault (a 2 MiB clear) instead of 512; the figure is bytes touched per second, and the counters give
/// the faults per 2 MiB (<c>pgfault</c> on Faultline, the host's minor faults on the kernel).
/// </summary>
internal sealed class ThpWorkload : IWorkload
{
    /// <inheritdoc />
    public string Name => "thp";

    /// <inheritdoc />
    public string Description => "per thread: map 128 MiB with MADV_HUGEPAGE, write each 4 KiB page, verify, unmap (bytes/s)";

    /// <inheritdoc />
    public bool CountsFaults => true;

    /// <inheritdoc />
    public bool ReportsBytes => true;

    /// <inheritdoc />
    // The arena also holds the alignment slack and the page tables.
    public long TouchedBytes(RunShape shape) => shape.Threads * ((long)WorkloadSizes.Region + (4L << 20));

    /// <inheritdoc />
    public IWorkloadRun Start(IMemoryTarget target, RunShape shape) => new WorkloadRun(target);

    private sealed class WorkloadRun(IMemoryTarget target) : IWorkloadRun
    {
        private long _iteration;

        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            const ulong length = WorkloadSizes.Region;
            while (!phase.StopRequested)
            {
                long salt = WorkloadSizes.Salt(worker, Interlocked.Increment(ref _iteration));
                ulong a = target.MapHugePageAdvised(length);
                memory.StampPages(a, WorkloadSizes.RegionPages, salt);
                long bad = memory.VerifyPages(a, WorkloadSizes.RegionPages, salt, out ulong firstBad);
                if (bad != 0)
                {
                    stats.Fail($"thp: {bad} pages with a wrong stamp in [0x{a:x}, +128 MiB), first at 0x{firstBad:x}");
                }
                target.Unmap(a, length);
                stats.Ops++;
                // One count a 4 KiB page touched (the bytes/s figure); the real faults are in the counters.
                stats.Faults += WorkloadSizes.RegionPages;
            }
        }
    }
}
