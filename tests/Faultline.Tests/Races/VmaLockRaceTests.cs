using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// Deterministic races of the per-VMA-lock fault path (<c>lock_vma_under_rcu</c>) against writers, staged with probe
/// gates: a faulting thread is stopped at a named step while a writer runs, then resumed, and the outcome asserted.
/// </summary>
public sealed class VmaLockRaceTests
{
    private const ulong Page = 4096;
    private const string Reader = "reader";
    private const string Writer = "writer";

    private static AddressSpace NewSpace() =>
        new(new FaultlineOptions { FaultPath = FaultPath.VmaLock, PhysicalMemoryBytes = 64 << 20 });

    private static ulong MapAt(AddressSpace space, ulong address, ulong pages, Protection protection) =>
        space.Map(address, pages * Page, protection, MapFlags.PrivateAnonymous | MapFlags.Fixed);

    /// <summary>Counter deltas since construction.</summary>
    private sealed class CounterDelta(AddressSpace space)
    {
        private readonly IReadOnlyDictionary<string, long> _before = space.GetCounters();

        public long this[string name] => space.GetCounters()[name] - _before[name];
    }

    [Fact]
    public void DetachRace_ReaderIncrementsBetweenLookupAndDetach_WriterWaitsAndCountEndsAtZero()
    {
        // Per-VMA refcount lock review (Peter Zijlstra, 2024-12): the reader found the VMA and raises vm_refcnt after vma_start_write, before
        // vma_mark_detached; the detaching decrement goes 2 -> 1. The writer must exclude and wait out that reader,
        // which fails its re-check (the VMA is write-locked), so the count ends at 0 with nobody inside.
        using AddressSpace space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapAt(space, 0x1000_0000, 8, Protection.ReadWrite);
        using Cpu cpu = space.AttachCpu();
        Vma vma = mm.Tree.LookupLockless(a)!;
        var counters = new CounterDelta(space);

        using var threads = new ThreadScope();
        using var probes = new ProbeCounter(mm.Probes);
        using var beforeDetach = new ProbeGate(space, ProbePoint.VmaBeforeDetach, ThreadRole.Is(Writer));
        using var afterLookup = new ProbeGate(space, ProbePoint.VmaLockAfterLookup, ThreadRole.Is(Reader));
        using var beforeIncrement = new ProbeGate(space, ProbePoint.VmaReadBeforeIncrement, ThreadRole.Is(Reader));
        using var incremented = new ProbeGate(space, ProbePoint.VmaReadIncremented, ThreadRole.Is(Reader));

        var reader = threads.Run(Reader, () => cpu.TryLoad(a + Page, out long _));
        afterLookup.WaitArrived();
        Assert.Equal(1, vma.RefCount); // found, not yet locked
        afterLookup.Release();
        beforeIncrement.WaitArrived(); // passed the cheap vm_lock_seq check: not write-locked yet

        var writer = threads.Run(Writer, () => space.TryUnmap(a, 8 * Page));
        beforeDetach.WaitArrived(); // stamped (nobody to wait for) and out of the tree
        Assert.Equal(mm.MmapLock.LockSequence, vma.LockSequence);
        Assert.Equal(1, vma.RefCount);

        beforeIncrement.Release();
        incremented.WaitArrived(); // the reader's increment landed between lookup and detach
        Assert.Equal(2, vma.RefCount);

        long sleeps = mm.WriterWait.Sleeps;
        beforeDetach.Release();
        ThreadRole.WaitUntil(() => mm.WriterWait.Sleeps > sleeps, "the detaching writer sleeps on the reader");
        Assert.Equal(1, probes[ProbePoint.VmaDetachWaiting]);
        Assert.Equal(Vma.LockOffset + 1, vma.RefCount);
        Assert.False(writer.IsDone);

        incremented.Release();
        Assert.Equal(AccessOutcome.SegvMapErr, reader.Join());
        Assert.Equal(Errno.None, writer.Join());

        Assert.Equal(0, vma.RefCount);
        Assert.Equal(1, counters["vma_lock_abort"]); // vma_start_read failed on the write-locked VMA
        Assert.Equal(0, counters["vma_lock_miss"]);
        Assert.Equal(0, counters["vma_lock_success"]);
        Assert.Equal(1, counters["segv_maperr"]); // the fallback found nothing: the mapping is gone
    }

    [Fact]
    public void DetachRace_DetachBeforeTheReadersIncrement_NoWaitAndReaderMisses()
    {
        // The other order: the reader found the VMA, then the whole munmap ran. The detach saw no reader (1 -> 0,
        // no wait); the reader's increment-unless-zero then fails on 0: Detached -> VMA_LOCK_MISS, look up again.
        using AddressSpace space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapAt(space, 0x1000_0000, 8, Protection.ReadWrite);
        using Cpu cpu = space.AttachCpu();
        Vma vma = mm.Tree.LookupLockless(a)!;
        var counters = new CounterDelta(space);

        using var threads = new ThreadScope();
        using var probes = new ProbeCounter(mm.Probes);
        using var afterLookup = new ProbeGate(space, ProbePoint.VmaLockAfterLookup, ThreadRole.Is(Reader));
        var reader = threads.Run(Reader, () => cpu.TryLoad(a + Page, out long _));
        afterLookup.WaitArrived();

        Assert.Equal(Errno.None, threads.Run(Writer, () => space.TryUnmap(a, 8 * Page)).Join());
        Assert.Equal(0, probes[ProbePoint.VmaDetachWaiting]);
        Assert.Equal(0, vma.RefCount);

        afterLookup.Release();
        Assert.Equal(AccessOutcome.SegvMapErr, reader.Join());
        Assert.Equal(1, probes[ProbePoint.VmaReadBeforeIncrement]); // the cheap check passed: the section had ended
        Assert.Equal(0, probes[ProbePoint.VmaReadIncremented]);     // the increment refused a zero count
        Assert.Equal(0, vma.RefCount);
        Assert.Equal(1, counters["vma_lock_miss"]);  // Detached: the area was replaced (here: removed)
        Assert.Equal(1, counters["vma_lock_abort"]); // the second lookup finds nothing
        Assert.Equal(0, counters["vma_lock_success"]);
    }

    [Fact]
    public void DetachRace_ReaderArrivesWhileTheReplacingWriterIsStillInItsSection_AbortsWithoutIncrement()
    {
        // Third placement: the reader reaches vma_start_read after the VMA was write-locked and detached but before
        // the write section ends. The cheap check fails first, the count is never raised, the detach never waits.
        using AddressSpace space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapAt(space, 0x1000_0000, 8, Protection.ReadWrite);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1); // a PTE for mprotect to narrow, so it flushes inside its write section
        Vma vma = mm.Tree.LookupLockless(a)!;
        var counters = new CounterDelta(space);

        using var threads = new ThreadScope();
        using var probes = new ProbeCounter(mm.Probes);
        using var inSection = new ProbeGate(space, ProbePoint.GatherBeforeGracePeriod, ThreadRole.Is(Writer));
        using var afterLookup = new ProbeGate(space, ProbePoint.VmaLockAfterLookup, ThreadRole.Is(Reader));
        var reader = threads.Run(Reader, () => cpu.TryLoad(a + Page, out long _));
        afterLookup.WaitArrived();

        var writer = threads.Run(Writer, () => space.TryProtect(a, 8 * Page, Protection.Read));
        inSection.WaitArrived();
        Assert.True(mm.MmapLock.IsWriteLocked);
        Assert.Equal(0, vma.RefCount); // replaced by a new VMA and detached

        afterLookup.Release();
        ThreadRole.WaitUntil(() => counters["vma_lock_abort"] == 1, "the reader aborts");
        Assert.Equal(0, probes[ProbePoint.VmaReadBeforeIncrement]); // stopped by the cheap check
        Assert.False(reader.IsDone); // falling back: waits for the mmap lock

        inSection.Release();
        Assert.Equal(Errno.None, writer.Join());
        Assert.Equal(AccessOutcome.Ok, reader.Join()); // the classic path found the read-only replacement
        Assert.Equal(0, probes[ProbePoint.VmaDetachWaiting]);
        Assert.Equal(0, vma.RefCount);
        Assert.Equal(0, counters["vma_lock_miss"]);
        Assert.Equal(1, counters["mmap_lock_fault"]);
    }

    [Theory]
    [InlineData("mprotect")]
    [InlineData("munmap")]
    public void WriterWaitsForAReaderInTheMiddleOfAFault(string operation)
    {
        using AddressSpace space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapAt(space, 0x1000_0000, 16, Protection.ReadWrite);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        using Cpu checker = space.AttachCpu();
        checker.Store(a, 1); // anon_vma and page table exist: the stopped fault completes under the VMA lock
        Vma vma = mm.Tree.LookupLockless(a)!;
        var counters = new CounterDelta(space);

        using var threads = new ThreadScope();
        using var probes = new ProbeCounter(mm.Probes);
        using var locked = new ProbeGate(space, ProbePoint.VmaLockLocked, ThreadRole.Is(Reader));
        var reader = threads.Run(Reader, () => cpu.TryStore(a + 5 * Page, 42L));
        locked.WaitArrived();
        Assert.Equal(2, vma.RefCount);

        long sleeps = mm.WriterWait.Sleeps;
        var writer = threads.Run(Writer, () => operation == "mprotect"
            ? space.TryProtect(a, 16 * Page, Protection.ReadWrite | Protection.Execute)
            : space.TryUnmap(a, 16 * Page));
        ThreadRole.WaitUntil(() => mm.WriterWait.Sleeps > sleeps, "the writer sleeps on the reader");
        Assert.Equal(1, probes[ProbePoint.VmaWriterWaiting]);
        Assert.Equal(Vma.LockOffset + 2, vma.RefCount); // offset added, one reader inside
        Assert.Same(vma, mm.Tree.LookupLockless(a)); // nothing changed yet

        // While the writer waits, new readers of the VMA are refused (no writer starvation) and fall back.
        var late = threads.Run("late", () => second.TryLoad(a + 9 * Page, out long _));
        ThreadRole.WaitUntil(() => counters["vma_lock_abort"] == 1, "a late reader is refused");
        Thread.Sleep(50);
        Assert.False(writer.IsDone);
        Assert.False(late.IsDone); // blocked on the mmap lock behind the writer
        Assert.Equal(Vma.LockOffset + 2, vma.RefCount);

        locked.Release();
        AccessOutcome stored = reader.Join();
        Assert.Equal(Errno.None, writer.Join());
        AccessOutcome lateOutcome = late.Join();
        Assert.Equal(0, vma.RefCount);
        Assert.True(counters["vma_lock_success"] >= 1); // the stopped fault finished on the VMA lock path

        if (operation == "mprotect")
        {
            Assert.Equal(AccessOutcome.Ok, stored);
            Assert.Equal(AccessOutcome.Ok, lateOutcome);
            Assert.Equal(42L, checker.Load<long>(a + 5 * Page));
            Vma replaced = mm.Tree.LookupLockless(a)!;
            Assert.NotSame(vma, replaced);
            Assert.Equal(1, replaced.RefCount);
            Assert.True((replaced.Flags & VmFlags.Exec) != 0);
        }
        else
        {
            // The fault completed before the unmap went on, so its page was zapped: no stale mapping survives.
            Assert.Contains(stored, new[] { AccessOutcome.Ok, AccessOutcome.SegvMapErr });
            Assert.Equal(AccessOutcome.SegvMapErr, lateOutcome);
            Assert.Equal(0, space.ResidentPages);
            Assert.Equal(AccessOutcome.SegvMapErr, checker.TryLoad(a + 5 * Page, out long _));
        }
    }

    [Fact]
    public void WriterWaitingForAStoppedReaderSleepsInsteadOfSpinning()
    {
        using AddressSpace space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapAt(space, 0x1000_0000, 16, Protection.ReadWrite);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1);
        Vma vma = mm.Tree.LookupLockless(a)!;

        using var threads = new ThreadScope();
        using var locked = new ProbeGate(space, ProbePoint.VmaLockLocked, ThreadRole.Is(Reader));
        var reader = threads.Run(Reader, () => cpu.TryStore(a + 5 * Page, 42L));
        locked.WaitArrived();

        long sleeps = mm.WriterWait.Sleeps;
        string? writerTid = null;
        Errno result = Errno.EINVAL;
        Thread writer = threads.Start(() =>
        {
            writerTid = OperatingSystem.IsLinux() ? Path.GetFileName(new DirectoryInfo("/proc/thread-self").LinkTarget) : null;
            result = space.TryProtect(a, 16 * Page, Protection.ReadWrite | Protection.Execute);
        });
        ThreadRole.WaitUntil(() => mm.WriterWait.Sleeps == sleeps + 1, "the writer goes to sleep");
        // Sleeps counts just before the event wait, which itself spins briefly before it blocks.
        int blockedSamples = 0;
        ThreadRole.WaitUntil(() => (blockedSamples = IsBlocked(writer) ? blockedSamples + 1 : 0) >= 5, "the writer blocks");
        long cpuBefore = ThreadCpuTicks(writerTid);
        Thread.Sleep(300);
        // The writer is still waiting (the protect has not completed under a stopped reader), it slept rather than
        // polled (a polling loop would count a sleep per round), and it burnt no CPU while the reader was stopped.
        // Individual ThreadState samples are not asserted: on a loaded 2-core machine they proved unreliable.
        Assert.True(writer.IsAlive);
        Assert.Equal(Errno.EINVAL, result);
        Assert.InRange(mm.WriterWait.Sleeps - sleeps, 1, 2);
        if (cpuBefore >= 0)
        {
            Assert.InRange(ThreadCpuTicks(writerTid) - cpuBefore, 0, 5); // clock ticks (10 ms): a spinner burns ~30
        }
        Assert.Equal(Vma.LockOffset + 2, vma.RefCount);

        locked.Release();
        Assert.Equal(AccessOutcome.Ok, reader.Join());
        Assert.True(writer.Join(10_000));
        Assert.Equal(Errno.None, result);
        Assert.InRange(mm.WriterWait.Sleeps - sleeps, 1, 2); // woken by the reader's vma_end_read
        Assert.Equal(0, vma.RefCount);
    }

    private static bool IsBlocked(Thread thread) => (thread.ThreadState & System.Threading.ThreadState.WaitSleepJoin) != 0;

    // utime + stime of a thread of this process, from /proc (Linux), or -1.
    private static long ThreadCpuTicks(string? tid)
    {
        if (tid is null || !File.Exists($"/proc/self/task/{tid}/stat"))
        {
            return -1;
        }
        string stat = File.ReadAllText($"/proc/self/task/{tid}/stat");
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[11]) + long.Parse(fields[12]); // fields 14 and 15 of proc(5), after pid and comm
    }

    [Fact]
    public void VmaReplacedBySplit_ReaderMissesThenFindsTheNewVmaAndSucceedsOnTheVmaLockPath()
    {
        using AddressSpace space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapAt(space, 0x1000_0000, 16, Protection.ReadWrite);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1); // anon_vma, inherited by the pieces of the split
        Vma vma = mm.Tree.LookupLockless(a + 10 * Page)!;
        var counters = new CounterDelta(space);

        using var threads = new ThreadScope();
        using var afterLookup = new ProbeGate(space, ProbePoint.VmaLockAfterLookup, ThreadRole.Is(Reader));
        var reader = threads.Run(Reader, () => cpu.TryStore(a + 10 * Page, 7L));
        afterLookup.WaitArrived();

        space.Protect(a, 4 * Page, Protection.Read); // splits: [a, a+4) read-only, [a+4, a+16) a new VMA
        Assert.Equal(2, space.MapCount);
        Assert.Equal(0, vma.RefCount);

        afterLookup.Release();
        Assert.Equal(AccessOutcome.Ok, reader.Join());
        Vma tail = mm.Tree.LookupLockless(a + 10 * Page)!;
        Assert.NotSame(vma, tail);
        Assert.Equal(1, tail.RefCount);
        Assert.Equal(0, vma.RefCount);
        Assert.Equal(7L, cpu.Load<long>(a + 10 * Page));
        Assert.True(counters["vma_lock_miss"] >= 1);
        Assert.Equal(1, counters["vma_lock_success"]);
        Assert.Equal(0, counters["vma_lock_abort"]);
        Assert.Equal(0, counters["mmap_lock_fault"]); // no fallback
    }

    [Fact]
    public void AnonVmaNeededWhileAWriterHoldsTheMmapLock_RetryThenClassicPathSucceeds()
    {
        using AddressSpace space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapAt(space, 0x1000_0000, 8, Protection.ReadWrite);   // no anon_vma yet
        ulong b = MapAt(space, 0x2000_0000, 8, Protection.ReadWrite);   // the writer's target, far away
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        other.Store(b, 1);
        Vma vma = mm.Tree.LookupLockless(a)!;
        Assert.Null(vma.AnonVma);
        var counters = new CounterDelta(space);

        using var threads = new ThreadScope();
        using var inSection = new ProbeGate(space, ProbePoint.GatherBeforeGracePeriod, ThreadRole.Is(Writer));
        using var locked = new ProbeGate(space, ProbePoint.VmaLockLocked, ThreadRole.Is(Reader));
        var reader = threads.Run(Reader, () => cpu.TryStore(a, 99L));
        locked.WaitArrived();
        var writer = threads.Run(Writer, () => space.TryProtect(b, 8 * Page, Protection.Read));
        inSection.WaitArrived();
        Assert.True(mm.MmapLock.IsWriteLocked);

        locked.Release(); // vmf_anon_prepare: the mmap read trylock fails -> RETRY
        ThreadRole.WaitUntil(() => counters["vma_lock_retry"] == 1, "the VMA-lock fault answers RETRY");
        Thread.Sleep(20);
        Assert.False(reader.IsDone); // the classic fallback waits for the mmap lock
        Assert.Equal(1, vma.RefCount); // the VMA read lock was dropped before falling back
        Assert.Null(vma.AnonVma);

        inSection.Release();
        Assert.Equal(Errno.None, writer.Join());
        Assert.Equal(AccessOutcome.Ok, reader.Join());
        Assert.NotNull(vma.AnonVma);
        Assert.Equal(99L, other.Load<long>(a));
        Assert.Equal(1, counters["vma_lock_retry"]);
        Assert.Equal(1, counters["mmap_lock_fault"]);
        Assert.Equal(0, counters["vma_lock_success"]);
        Assert.Equal(1, vma.RefCount);
    }

    [Fact]
    public void ReadersAtTheRefLimit_AbortAndTheFallbackWorks()
    {
        using AddressSpace space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapAt(space, 0x1000_0000, 8, Protection.ReadWrite);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1);
        Vma vma = mm.Tree.LookupLockless(a)!;

        vma.AdjustRefCountForTest(Vma.RefLimit - 1); // RefLimit - 1 readers inside: no room for another
        var counters = new CounterDelta(space);
        cpu.Store(a + 3 * Page, 5L);
        Assert.Equal(5L, cpu.Load<long>(a + 3 * Page));
        Assert.Equal(1, counters["vma_lock_abort"]);
        Assert.Equal(0, counters["vma_lock_success"]);
        Assert.Equal(1, counters["mmap_lock_fault"]);
        Assert.Equal(Vma.RefLimit, vma.RefCount); // the refused reader left no trace

        vma.AdjustRefCountForTest(-(Vma.RefLimit - 1));
        counters = new CounterDelta(space);
        cpu.Store(a + 4 * Page, 6L);
        Assert.Equal(1, counters["vma_lock_success"]);
        Assert.Equal(0, counters["vma_lock_abort"]);
        Assert.Equal(1, vma.RefCount);
    }
}
