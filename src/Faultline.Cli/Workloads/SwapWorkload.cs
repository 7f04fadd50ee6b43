using Faultline.Cli.Paths;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// <c>swap</c>: anonymous memory twice the guest RAM (<see cref="SwapAreaKind"/> area behind it), each thread cycling
/// through its share of the working set sequentially or at random pages: every touch reads the page's stamp back
/// (a swap-in when reclaim had paged it out, <c>do_swap_page</c>), checks it and writes a new one, so reclaim keeps
/// paging out to make room (<c>shrink_folio_list</c>/<c>swap_writepage</c>). Its faults/s come from the
/// <c>pgfault</c> counter, pages in and out per second from <c>pswpin</c>/<c>pswpout</c>; the row also holds the
/// area's floor (<see cref="SwapAreaFloor"/>). The kernel row needs a swap area and a cgroup v2 <c>memory.max</c> on
/// the host (<see cref="KernelSwapProbe"/>).
/// </summary>
/// <param name="area">The kind of swap area.</param>
/// <param name="random">True for random pages, false for a sequential sweep.</param>
/// <param name="workingSetBytes">Guest memory touched by all threads together; the guest RAM is half of it.</param>
internal sealed class SwapWorkload(SwapAreaKind area, bool random, long workingSetBytes = SwapWorkload.DefaultWorkingSet) : IWorkload
{
    /// <summary>The working set when none is given: 128 MiB over 64 MiB of guest RAM.</summary>
    public const long DefaultWorkingSet = 128L << 20;

    /// <summary>Every variant, in report order: the compressed area then the file, sequential then random.</summary>
    public static readonly SwapWorkload[] Variants =
    [
        new(SwapAreaKind.Compressed, random: false),
        new(SwapAreaKind.Compressed, random: true),
        new(SwapAreaKind.File, random: false),
        new(SwapAreaKind.File, random: true),
    ];

    /// <summary>The name that selects every variant.</summary>
    public const string GroupName = "swap";

    /// <inheritdoc />
    public string Name => $"{GroupName}-{AreaName(area)}-{(random ? "random" : "seq")}";

    /// <inheritdoc />
    public string Description => $"{workingSetBytes >> 20} MiB over {workingSetBytes >> 21} MiB of RAM, {AreaName(area)} swap area: {(random ? "random pages" : "sequential sweeps")}, each read-verified then restamped (faults, swap-ins, swap-outs/s)";

    /// <inheritdoc />
    public bool CountsFaults => true;

    /// <inheritdoc />
    public bool UsesChurn => true;

    /// <inheritdoc />
    public int DefaultChurn => 0;

    /// <inheritdoc />
    public SwapAreaKind? SwapArea => area;

    /// <inheritdoc />
    public string? FaultCounter => VmCounters.PageFault;

    /// <summary>True for random access.</summary>
    public bool Random => random;

    /// <inheritdoc />
    /// <remarks>The whole working set; the guest RAM is half of it (<see cref="RamBytes"/>).</remarks>
    public long TouchedBytes(RunShape shape) => workingSetBytes;

    /// <summary>The guest RAM: half the working set.</summary>
    public long RamBytes => workingSetBytes / 2;

    /// <inheritdoc />
    public string? Unavailable(PathKind path) => path == PathKind.Kernel ? KernelSwapProbe.Problem : null;

    /// <summary>The options a Faultline target gets: an area of this kind with room for the whole working set.</summary>
    public SwapOptions Options() => new() { Kind = area, SizeBytes = workingSetBytes + (16L << 20) };

    /// <inheritdoc />
    public IWorkloadRun Start(IMemoryTarget target, RunShape shape) => new WorkloadRun(target, shape, workingSetBytes, random);

    /// <summary>The area's name on the command line.</summary>
    public static string AreaName(SwapAreaKind kind) => kind == SwapAreaKind.File ? "file" : "compressed";

    private sealed class WorkloadRun(IMemoryTarget target, RunShape shape, long workingSetBytes, bool random) : IWorkloadRun
    {
        private readonly Region?[] _regions = new Region?[shape.Threads];
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
            // Populated once, in the first phase this thread runs; the regions stay mapped until the target goes.
            Region region = _regions[worker] ??= Region.Populate(target, memory, workingSetBytes / shape.Threads / (long)WorkloadSizes.Page, worker);
            // At least one pass a phase, however late a loaded machine starts this thread.
            do
            {
                long salt = WorkloadSizes.Salt(worker, Interlocked.Increment(ref _iteration));
                long bad = random ? region.RandomPass(memory, salt, out ulong firstBad) : region.SequentialPass(memory, salt, out firstBad);
                if (bad != 0)
                {
                    stats.Fail($"swap: {bad} pages read back with a wrong stamp, first at 0x{firstBad:x}");
                }
                stats.Ops++;
            }
            while (!phase.StopRequested);
        }
    }

    // One thread's share: the mapping and the salt each page's stamp was last written with.
    private sealed class Region(ulong address, long[] salts, int worker)
    {
        private readonly Random _random = new(worker + 1);

        public static Region Populate(IMemoryTarget target, ThreadMemory memory, long pages, int worker)
        {
            ulong a = target.Map((ulong)pages * WorkloadSizes.Page);
            var salts = new long[pages];
            long salt = WorkloadSizes.Salt(worker, 0);
            Array.Fill(salts, salt);
            memory.StampPages(a, pages, salt);
            return new Region(a, salts, worker);
        }

        public long SequentialPass(ThreadMemory memory, long salt, out ulong firstBad)
        {
            long bad = 0;
            firstBad = 0;
            for (long i = 0; i < salts.LongLength; i++)
            {
                bad += Touch(memory, i, salt, ref firstBad);
            }
            return bad;
        }

        // As many touches as pages, each at a random page: about half find theirs paged out.
        public long RandomPass(ThreadMemory memory, long salt, out ulong firstBad)
        {
            long bad = 0;
            firstBad = 0;
            for (long n = 0; n < salts.LongLength; n++)
            {
                bad += Touch(memory, _random.NextInt64(salts.LongLength), salt, ref firstBad);
            }
            return bad;
        }

        private long Touch(ThreadMemory memory, long index, long salt, ref ulong firstBad)
        {
            ulong page = address + (ulong)index * WorkloadSizes.Page;
            long wrong = memory.LoadLong(page) == Stamp.Of(page, salts[index]) ? 0 : 1;
            if (wrong != 0 && firstBad == 0)
            {
                firstBad = page;
            }
            memory.StoreLong(page, Stamp.Of(page, salt));
            salts[index] = salt;
            return wrong;
        }
    }
}
