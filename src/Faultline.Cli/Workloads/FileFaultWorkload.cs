using Faultline.Cli.Paths;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// will-it-scale's file page-fault tests on a per-thread tmpfs file of 128 MiB: <c>page_fault2</c> maps it private and
/// writes every page (a copy-on-write fault from the page cache each page), <c>page_fault3</c> maps it shared and writes
/// every page (a shared write fault each page), <c>file_read</c> maps it read-only and reads every page of the cached
/// file (read faults, fault-around mapping 16 pages a fault). Each iteration maps, touches, verifies and unmaps; the
/// file and its page cache stay, so after the first iteration every fault finds its page cached. The figure is per
/// page touched. With <c>--churn</c>, churn threads run <see cref="MixedWorkload.ChurnIteration"/> beside them (none by
/// default), so the scalable paths can be compared with the mmap-lock path on file faults as on anonymous ones.
/// </summary>
internal sealed class FileFaultWorkload : IWorkload
{
    private readonly bool _shared;
    private readonly bool _write;

    private FileFaultWorkload(string name, string description, bool shared, bool write)
    {
        Name = name;
        Description = description;
        _shared = shared;
        _write = write;
    }

    /// <summary>will-it-scale <c>page_fault2</c>.</summary>
    public static FileFaultWorkload PrivateWrite { get; } =
        new("page_fault2", "per thread: map a 128 MiB tmpfs file private, write each page (COW from the page cache), verify, unmap", shared: false, write: true);

    /// <summary>will-it-scale <c>page_fault3</c>.</summary>
    public static FileFaultWorkload SharedWrite { get; } =
        new("page_fault3", "per thread: map a 128 MiB tmpfs file shared, write each page, verify, unmap", shared: true, write: true);

    /// <summary>A read-only fault loop over a cached file.</summary>
    public static FileFaultWorkload CachedRead { get; } =
        new("file_read", "per thread: map a cached 128 MiB tmpfs file read-only, read each page, unmap", shared: true, write: false);

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public string Description { get; }

    /// <inheritdoc />
    public bool CountsFaults => true;

    /// <inheritdoc />
    public bool UsesChurn => true;

    /// <inheritdoc />
    public int DefaultChurn => 0;

    /// <inheritdoc />
    /// <remarks>The file's pages, and for private writes their copies.</remarks>
    public long TouchedBytes(RunShape shape) => shape.Threads * (long)WorkloadSizes.Region * (_shared ? 1 : 2);

    /// <inheritdoc />
    public IWorkloadRun Start(IMemoryTarget target, RunShape shape) => new WorkloadRun(this, target, shape);

    private sealed class WorkloadRun(FileFaultWorkload workload, IMemoryTarget target, RunShape shape) : IWorkloadRun
    {
        private long _iteration;

        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            if (worker >= shape.Threads)
            {
                while (!phase.StopRequested)
                {
                    MixedWorkload.ChurnIteration(target, stats);
                }
                return;
            }
            const ulong length = WorkloadSizes.Region;
            long readSalt = WorkloadSizes.Salt(worker, 0);
            if (!workload._write)
            {
                // The file's contents, once: the read loop then checks it sees them.
                ulong stamped = target.MapFile(worker, length, shared: true, writable: true);
                memory.StampPages(stamped, WorkloadSizes.RegionPages, readSalt);
                target.Unmap(stamped, length);
            }
            // At least one iteration, then until asked to stop.
            do
            {
                long salt = WorkloadSizes.Salt(worker, Interlocked.Increment(ref _iteration));
                ulong a = target.MapFile(worker, length, workload._shared, workload._write);
                if (workload._write)
                {
                    memory.StampPages(a, WorkloadSizes.RegionPages, salt);
                    long bad = memory.VerifyPages(a, WorkloadSizes.RegionPages, salt, out ulong firstBad);
                    if (bad != 0)
                    {
                        stats.Fail($"{workload.Name}: {bad} pages with a wrong stamp in [0x{a:x}, +128 MiB), first at 0x{firstBad:x}");
                    }
                }
                else
                {
                    // A stamp is a function of the address, and the read mapping may be placed elsewhere than the
                    // stamping one was: the read checks only that no page lost its contents.
                    ReadEveryPage(memory, a, stats);
                }
                target.Unmap(a, length);
                stats.Ops++;
                stats.Faults += WorkloadSizes.RegionPages;
            }
            while (!phase.StopRequested);
        }

        private static void ReadEveryPage(ThreadMemory memory, ulong address, WorkerStats stats)
        {
            long zeros = 0;
            for (long page = 0; page < WorkloadSizes.RegionPages; page++)
            {
                zeros += memory.LoadLong(address + ((ulong)page << 12)) == 0 ? 1 : 0;
            }
            if (zeros != 0)
            {
                stats.Fail($"file_read: {zeros} pages of the stamped file read as zero");
            }
        }
    }
}
