using Faultline.Cli.Paths;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// will-it-scale <c>mmap1</c>: each thread maps 128 MiB of anonymous memory and unmaps it, untouched; loop. Pure
/// mmap-lock writer traffic; one op is a map/unmap pair. It writes nothing, so it verifies what the calls return:
/// a page-aligned user address, and an unmap that succeeds.
/// </summary>
internal sealed class Mmap1Workload : IWorkload
{
    /// <inheritdoc />
    public string Name => "mmap1";

    /// <inheritdoc />
    public string Description => "per thread: map and unmap 128 MiB untouched (ops/s)";

    /// <inheritdoc />
    public bool CountsFaults => false;

    /// <inheritdoc />
    public long TouchedBytes(RunShape shape) => 0;

    /// <inheritdoc />
    public IWorkloadRun Start(IMemoryTarget target, RunShape shape) => new WorkloadRun(target);

    private sealed class WorkloadRun(IMemoryTarget target) : IWorkloadRun
    {
        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            const ulong length = WorkloadSizes.Region;
            while (!phase.StopRequested)
            {
                ulong a = target.Map(length);
                if (a == 0 || (a & (WorkloadSizes.Page - 1)) != 0 || a + length > 1UL << 47)
                {
                    stats.Fail($"mmap1: map returned a bad address 0x{a:x}");
                }
                target.Unmap(a, length);
                stats.Ops++;
            }
        }
    }
}
