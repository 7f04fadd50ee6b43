using Faultline.Cli.Paths;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// The mmap-lock contention case: <see cref="RunShape.Threads"/> workers run <see cref="PageFault1Workload"/> while
/// <see cref="RunShape.Churn"/> workers map, mprotect (splitting the VMA in three, then merging it back) and unmap
/// small unrelated regions of the same address space in a tight loop. Each churn call takes the mmap lock for write;
/// a classic fault waits for it, a speculative or VMA-locked fault on an unrelated VMA should not. Churn regions are
/// mapped read-only so they never merge with the faulting workers' read-write VMAs (top-down placement puts them
/// right next to each other): otherwise every churn call would resize, and write-lock, the VMA being faulted, and
/// the regions would not be unrelated. Figures: faults/s of the faulting workers and churn ops/s (one op = one map,
/// protect or unmap call).
/// </summary>
internal sealed class MixedWorkload : IWorkload
{
    /// <summary>Pages in a churn region.</summary>
    public const int ChurnPages = 16;

    /// <inheritdoc />
    public string Name => "mixed";

    /// <inheritdoc />
    public string Description => "page_fault1 threads + churn threads doing map/mprotect/unmap of small regions";

    /// <inheritdoc />
    public bool CountsFaults => true;

    /// <inheritdoc />
    public bool UsesChurn => true;

    /// <inheritdoc />
    public long TouchedBytes(RunShape shape) => shape.Threads * (long)WorkloadSizes.Region;

    /// <inheritdoc />
    public IWorkloadRun Start(IMemoryTarget target, RunShape shape) => new WorkloadRun(target, shape);

    /// <summary>One churn iteration: map 16 read-only pages, make the middle writable and read-only again, unmap (4 ops).</summary>
    public static void ChurnIteration(IMemoryTarget target, WorkerStats stats)
    {
        const ulong length = ChurnPages * WorkloadSizes.Page;
        ulong a = target.Map(length, writable: false);
        target.Protect(a + 4 * WorkloadSizes.Page, 4 * WorkloadSizes.Page, writable: true);
        target.Protect(a + 4 * WorkloadSizes.Page, 4 * WorkloadSizes.Page, writable: false);
        target.Unmap(a, length);
        stats.ChurnOps += 4;
    }

    private sealed class WorkloadRun(IMemoryTarget target, RunShape shape) : IWorkloadRun
    {
        private long _iteration;

        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            if (worker < shape.Threads)
            {
                while (!phase.StopRequested)
                {
                    PageFault1Workload.Iteration(target, memory, worker, Interlocked.Increment(ref _iteration), stats);
                }
            }
            else
            {
                while (!phase.StopRequested)
                {
                    ChurnIteration(target, stats);
                }
            }
        }
    }
}
