using Faultline.Cli.Paths;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// <c>malloc</c>: a glibc-malloc-like pattern. <see cref="RunShape.Threads"/> touching threads run
/// <see cref="PageFault1Workload"/> (map 128 MiB, write every page, check, unmap) while <see cref="RunShape.Churn"/>
/// mutating threads loop an allocator's script (<see cref="MutatorIteration"/>): a chunk from a brk heap shared by
/// all mutators (<see cref="MallocArena"/>, glibc's main arena and its mutex: first fit, else brk up when the heap is
/// short; down past the trim threshold), a large block mapped, grown by <c>mremap(MREMAP_MAYMOVE)</c> (realloc), partly
/// given back with <c>MADV_DONTNEED</c> and reused, then unmapped. Every page written is read back, moved pages at
/// their new address. Faultline runs it on an <see cref="AddressSpace"/>; the kernel row runs
/// <c>Native/malloc_bench.c</c>, the same threads and script on the real system calls (a .NET process cannot move its
/// program break). Figures: the touching threads' faults/s and CPU per fault, the mutators' system calls per second.
/// </summary>
internal sealed class MallocWorkload : IWorkload
{
    /// <summary>The smallest large block: 256 KiB, above glibc's default <c>M_MMAP_THRESHOLD</c> (128 KiB).</summary>
    public const ulong BlockMin = 256 << 10;

    /// <summary>The step of the heap chunks: 64 KiB to 256 KiB.</summary>
    public const ulong HeapStep = 64 << 10;

    /// <summary>Salted into the stamps of the block's pages written again after <c>MADV_DONTNEED</c>.</summary>
    private const long ReuseSalt = 0x5EE5_A11C;

    /// <inheritdoc />
    public string Name => "malloc";

    /// <inheritdoc />
    public string Description => "page_fault1 threads + mutator threads doing brk growth and trim, mmap, mremap growth, MADV_DONTNEED and munmap";

    /// <inheritdoc />
    public bool CountsFaults => true;

    /// <inheritdoc />
    public bool TimesItsFaults => true;

    /// <inheritdoc />
    public bool UsesChurn => true;

    /// <inheritdoc />
    public int DefaultThreads => 2;

    /// <inheritdoc />
    public int DefaultChurn => 2;

    /// <inheritdoc />
    // The largest block grown (4 MiB) and a heap chunk (256 KiB) per mutator, doubled: freed frames may wait for reuse.
    public long TouchedBytes(RunShape shape) => shape.Threads * (long)WorkloadSizes.Region + shape.Churn * (10L << 20);

    /// <inheritdoc />
    public string? Unavailable(PathKind path) => path == PathKind.Kernel ? KernelMallocProgram.Problem : null;

    /// <inheritdoc />
    public IWorkloadRun Start(IMemoryTarget target, RunShape shape) =>
        target is FaultlineTarget faultline ? new FaultlineRun(faultline, shape) : new KernelRun(shape);

    /// <summary>
    /// Round <paramref name="k"/> of a mutator (the C reference's <c>mutator_iteration</c>, step for step). Each
    /// system call is one churn op; wrong pages are recorded in <paramref name="stats"/>.
    /// </summary>
    public static void MutatorIteration(AddressSpace space, MallocArena arena, ThreadMemory memory, int worker, long k, WorkerStats stats)
    {
        const ulong page = WorkloadSizes.Page;
        long salt = WorkloadSizes.Salt(worker, k);

        ulong heapLength = HeapStep * (ulong)(1 + k % 4);
        ulong small = arena.Allocate(heapLength, stats);
        memory.StampPages(small, (long)(heapLength / page), salt);

        ulong length = BlockMin << (int)(k % 4);
        long pages = (long)(length / page);
        ulong half = length / 2;
        ulong a = space.Map(0, length, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        stats.ChurnOps++;
        memory.StampPages(a, pages, salt);
        ulong b = space.Remap(a, length, 2 * length, RemapFlags.MayMove);
        stats.ChurnOps++;
        Check(stats, WrongPages(memory, b, pages, a, salt), "block after mremap", b);
        memory.StampPages(b + length, pages, salt);
        space.Advise(b + half, length, Advice.DontNeed);
        stats.ChurnOps++;
        Check(stats, memory.LoadLong(b + half) != 0 ? 1 : 0, "block after MADV_DONTNEED (not zero)", b + half);
        memory.StampPages(b + half, pages, salt ^ ReuseSalt);
        Check(stats, WrongPages(memory, b, pages / 2, a, salt), "block, moved part", b);
        Check(stats, memory.VerifyPages(b + half, pages, salt ^ ReuseSalt, out _), "block, reused part", b + half);
        Check(stats, memory.VerifyPages(b + half + length, pages / 2, salt, out _), "block, grown part", b + half + length);
        space.Unmap(b, 2 * length);
        stats.ChurnOps++;

        Check(stats, memory.VerifyPages(small, (long)(heapLength / page), salt, out _), "heap chunk", small);
        arena.Free(small, stats);
    }

    // Pages of [address, +pages) whose first word is not the stamp written at origin + the same offset (before a move).
    private static long WrongPages(ThreadMemory memory, ulong address, long pages, ulong origin, long salt)
    {
        long bad = 0;
        for (long i = 0; i < pages; i++)
        {
            ulong offset = (ulong)i * WorkloadSizes.Page;
            bad += memory.LoadLong(address + offset) != Stamp.Of(origin + offset, salt) ? 1 : 0;
        }
        return bad;
    }

    private static void Check(WorkerStats stats, long bad, string what, ulong address)
    {
        if (bad != 0)
        {
            stats.Fail($"malloc: {bad} page(s) wrong: {what} at 0x{address:x}");
        }
    }

    private sealed class FaultlineRun(FaultlineTarget target, RunShape shape) : IWorkloadRun
    {
        private readonly MallocArena _arena = new(target.Space);
        private long _iteration;

        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            if (worker < shape.Threads)
            {
                (double cpu, double wall) = ForkPages.Timed(() =>
                {
                    while (!phase.StopRequested)
                    {
                        PageFault1Workload.Iteration(target, memory, worker, Interlocked.Increment(ref _iteration), stats);
                    }
                });
                stats.FaultCpuSeconds += cpu;
                stats.FaultSeconds += wall;
                return;
            }
            for (long k = 0; !phase.StopRequested; k++)
            {
                MutatorIteration(target.Space, _arena, memory, worker, k, stats);
            }
        }
    }

    /// <summary>
    /// The kernel row: each phase runs one <c>malloc_bench</c>, driven by worker 0, which records the touchers'
    /// figures between a snapshot at its start and one when the phase ends; the first mutating worker records the
    /// mutators' system calls of the same interval. The other workers have nothing to do.
    /// </summary>
    private sealed class KernelRun(RunShape shape) : IWorkloadRun
    {
        private readonly Lock _lock = new();
        private readonly Dictionary<PhaseControl, TaskCompletionSource<KernelMallocFigures>> _phases = [];

        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            TaskCompletionSource<KernelMallocFigures> interval;
            lock (_lock)
            {
                if (!_phases.TryGetValue(phase, out interval!))
                {
                    interval = new TaskCompletionSource<KernelMallocFigures>(TaskCreationOptions.RunContinuationsAsynchronously);
                    _phases[phase] = interval;
                }
            }
            if (worker == 0)
            {
                try
                {
                    KernelMallocFigures f = Measure(phase, stats);
                    interval.SetResult(f);
                }
                catch (Exception e)
                {
                    interval.SetException(e);
                    throw;
                }
            }
            else if (worker == shape.Threads)
            {
                // The mutators' figures come with the touchers'; a failure is already recorded by worker 0.
                ((IAsyncResult)interval.Task).AsyncWaitHandle.WaitOne();
                if (interval.Task.IsCompletedSuccessfully)
                {
                    stats.ChurnOps += interval.Task.Result.MutatorOps;
                }
            }
        }

        private KernelMallocFigures Measure(PhaseControl phase, WorkerStats stats)
        {
            using KernelMallocProcess process = KernelMallocProgram.Start(shape.Threads, shape.Churn);
            KernelMallocFigures first = process.Snapshot();
            while (!phase.StopRequested)
            {
                Thread.Sleep(1);
            }
            KernelMallocFigures f = process.Snapshot().Since(first);
            string? wrong = process.Stop();
            stats.Ops += f.ToucherIterations;
            stats.Faults += f.ToucherFaults;
            stats.FaultCpuSeconds += f.ToucherCpuSeconds;
            // Faults/s divides by the faulting workers' mean time: the interval counts once for each of them.
            stats.FaultSeconds += f.Seconds * shape.Threads;
            if (f.Mismatches != 0 || wrong is not null)
            {
                stats.Fail($"malloc (kernel): {wrong ?? $"{f.Mismatches} page(s) read wrong"}");
            }
            return f;
        }
    }
}
