using Faultline.Cli.Paths;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// will-it-scale <c>page_fault1</c>: each thread maps 128 MiB of private anonymous memory, writes every page once
/// (one first-touch fault a page), reads the stamps back, unmaps; loop. Each thread has its own VMA.
/// </summary>
internal sealed class PageFault1Workload : IWorkload
{
    /// <inheritdoc />
    public string Name => "page_fault1";

    /// <inheritdoc />
    public string Description => "per thread: map 128 MiB, write each page, verify, unmap (faults/s)";

    /// <inheritdoc />
    public bool CountsFaults => true;

    /// <inheritdoc />
    public long TouchedBytes(RunShape shape) => shape.Threads * (long)WorkloadSizes.Region;

    /// <inheritdoc />
    public IWorkloadRun Start(IMemoryTarget target, RunShape shape) => new WorkloadRun(target);

    /// <summary>One page_fault1 iteration; shared with <see cref="MixedWorkload"/>.</summary>
    public static void Iteration(IMemoryTarget target, ThreadMemory memory, int worker, long iteration, WorkerStats stats)
    {
        const ulong length = WorkloadSizes.Region;
        long salt = WorkloadSizes.Salt(worker, iteration);
        ulong a = target.Map(length);
        memory.StampPages(a, WorkloadSizes.RegionPages, salt);
        long bad = memory.VerifyPages(a, WorkloadSizes.RegionPages, salt, out ulong firstBad);
        if (bad != 0)
        {
            stats.Fail($"page_fault1: {bad} pages with a wrong stamp in [0x{a:x}, +128 MiB), first at 0x{firstBad:x}");
        }
        target.Unmap(a, length);
        stats.Ops++;
        stats.Faults += WorkloadSizes.RegionPages;
    }

    private sealed class WorkloadRun(IMemoryTarget target) : IWorkloadRun
    {
        private long _iteration;

        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            while (!phase.StopRequested)
            {
                Iteration(target, memory, worker, Interlocked.Increment(ref _iteration), stats);
            }
        }
    }
}
