using System.Diagnostics;
using Faultline.Cli.Paths;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// <c>fork</c>: map a region (256 MiB unless <c>--fork-mib</c>), write every page, fork; the child writes every page
/// (one copy-on-write fault a page, each copying 4 KiB) and goes away; then the parent writes every page. Faultline
/// forks with <see cref="AddressSpace.Fork"/> and runs the child on a Cpu of the child space, on the worker's thread;
/// the kernel row runs <c>Native/fork_bench.c</c> (real <c>fork()</c>) once per iteration. Figures: the fork call's
/// latency, and the child's CPU per copy-on-write fault (its write loop only: getrusage around it ÷ its faults); the
/// parent's loop is reported beside it with how many of its faults copied rather than reused the page (Linux reuses a
/// page no one else maps any more). One thread: a fork copies the whole address space.
/// </summary>
/// <param name="regionMib">Size of the region in MiB.</param>
internal sealed class ForkWorkload(int regionMib = WorkloadSizes.ForkRegionMib) : IWorkload
{
    /// <summary>Size of the region in MiB.</summary>
    public int RegionMib => regionMib;

    private ulong Length => (ulong)regionMib << 20;

    /// <inheritdoc />
    public string Name => "fork";

    /// <inheritdoc />
    public string Description => $"map {regionMib} MiB, write it, fork; child writes every page, exits; parent writes every page (fork ms, ns per COW fault)";

    /// <inheritdoc />
    public bool CountsFaults => true;

    /// <inheritdoc />
    public bool TimesItsFaults => true;

    /// <inheritdoc />
    public bool SingleThreaded => true;

    /// <inheritdoc />
    public long TouchedBytes(RunShape shape) => 2 * (long)Length;

    /// <inheritdoc />
    public string? Unavailable(PathKind path) => path == PathKind.Kernel ? KernelForkProgram.Problem : null;

    /// <inheritdoc />
    public IWorkloadRun Start(IMemoryTarget target, RunShape shape) =>
        target is FaultlineTarget faultline ? new FaultlineRun(faultline, Length) : new KernelRun(regionMib);

    private sealed class FaultlineRun(FaultlineTarget target, ulong length) : IWorkloadRun
    {
        private long _iteration;

        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            long pages = (long)(length / WorkloadSizes.Page);
            // At least one fork per phase, however late a loaded machine starts this thread: every run reports one.
            do
            {
                long populated = WorkloadSizes.Salt(worker, Interlocked.Increment(ref _iteration));
                long childSalt = populated ^ 0x0C41_1D00;
                long parentSalt = populated ^ 0x0FA7_4E00;
                ulong a = target.Map(length);
                memory.StampPages(a, pages, populated);

                long start = Stopwatch.GetTimestamp();
                AddressSpace childSpace = target.Space.Fork();
                stats.Fork.ForkSeconds += Stopwatch.GetElapsedTime(start).TotalSeconds;
                stats.Fork.Forks++;
                using (childSpace)
                using (var child = new FaultlineThreadMemory(childSpace.AttachCpu()))
                {
                    (double cpu, double wall) = ForkPages.Timed(() => child.StampPages(a, pages, childSalt, word: 1));
                    // The child's own count, as the kernel row counts ru_minflt: the space is new, so all of it is this loop's.
                    IReadOnlyDictionary<string, long> childCounters = childSpace.GetCounters();
                    stats.Faults += childCounters.GetValueOrDefault("pgfault");
                    stats.Fork.AddChild(childCounters);
                    stats.FaultCpuSeconds += cpu;
                    stats.FaultSeconds += wall;
                    Check(stats, "child", a, ForkPages.CountWrong(child, a, pages, populated, childSalt, null));
                }

                long copiesBefore = target.Space.GetCounters().GetValueOrDefault("cow_fault");
                (double parentCpu, _) = ForkPages.Timed(() => memory.StampPages(a, pages, parentSalt, word: 2));
                stats.Fork.AddParent(pages, parentCpu, target.Space.GetCounters().GetValueOrDefault("cow_fault") - copiesBefore);
                Check(stats, "parent", a, ForkPages.CountWrong(memory, a, pages, populated, null, parentSalt));
                target.Unmap(a, length);
                stats.Ops++;
            }
            while (!phase.StopRequested);
        }

        private static void Check(WorkerStats stats, string side, ulong a, long bad)
        {
            if (bad != 0)
            {
                stats.Fail($"fork: the {side} read {bad} page(s) of the region at 0x{a:x} wrong after its writes");
            }
        }
    }

    private sealed class KernelRun(int regionMib) : IWorkloadRun
    {
        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            // At least one fork per phase, however late a loaded machine starts this thread: every run reports one.
            do
            {
                KernelForkFigures f = KernelForkProgram.Run(regionMib);
                stats.Faults += f.ChildFaults;
                stats.FaultCpuSeconds += f.ChildCpuSeconds;
                stats.FaultSeconds += f.ChildSeconds;
                stats.Fork.Forks++;
                stats.Fork.ForkSeconds += f.ForkSeconds;
                stats.Fork.AddParent(f.ParentFaults, f.ParentCpuSeconds, f.ParentCopies);
                if (f.Mismatches != 0)
                {
                    stats.Fail($"fork (kernel): {f.Mismatches} page(s) read wrong by the child or the parent after their writes");
                }
                stats.Ops++;
            }
            while (!phase.StopRequested);
        }
    }
}
