using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// Deterministic races of stack expansion (<c>lock_mm_and_find_vma</c> → <c>expand_downwards</c>) against faults
/// on the other paths and against each other: a fault is stopped at a named step while another Cpu grows the
/// stack, then resumed; every fault must end mapped at the right place, the stack grown once, and no frame leaked.
/// </summary>
public sealed class StackGrowthRaceTests
{
    private const ulong Page = 4096;
    private const ulong Stack = 0x3000_0000;
    private const string Faulter = "faulter";
    private const string Grower = "grower";

    private static (AddressSpace Space, Cpu Faulter, Cpu Grower) Prepared(FaultPath path)
    {
        var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 64 << 20 });
        space.Map(Stack, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.GrowsDown);
        Cpu faulter = space.AttachCpu();
        Cpu grower = space.AttachCpu();
        grower.Store(Stack + 7 * Page, 1L); // an anon_vma and a PTE table, so the racing fault below needs neither
        return (space, faulter, grower);
    }

    private static ThreadRunner<AccessOutcome> StoreOn(string role, Cpu cpu, ulong address, long value) =>
        ThreadRole.Run(role, () => cpu.TryStore(address, value));

    // Detaches the Cpus and checks the space holds exactly its resident pages and its tables.
    private static void TearDown(AddressSpace space, params Cpu[] cpus)
    {
        foreach (Cpu cpu in cpus)
        {
            cpu.Dispose();
        }
        Assert.Equal(space.ResidentPages + space.PageTablePages, space.FramesInUse);
        space.Dispose();
    }

    private static (ulong, ulong)[] Ranges(AddressSpace space) => space.GetMappings().Select(m => (m.Start, m.End)).ToArray();

    [Theory]
    [InlineData(FaultPath.VmaLock, "vma_lock_abort")]
    [InlineData(FaultPath.Speculative, "spf_vma_novma")]
    public void AFaultBelowTheStackOnALocklessPathFallsBackAndGrows(FaultPath path, string fallbackCounter)
    {
        (AddressSpace space, Cpu faulter, Cpu grower) = Prepared(path);
        Dictionary<string, long> before = Counters(space);
        using var probes = new ProbeCounter(space.Descriptor.Probes);

        Assert.Equal(AccessOutcome.Ok, faulter.TryStore(Stack - 3 * Page, 5L));

        Assert.Equal(1, Delta(before, space, fallbackCounter)); // lock_vma_under_rcu / the lockless lookup: no VMA
        Assert.Equal(1, Delta(before, space, "mmap_lock_fault"));
        Assert.Equal(1, probes[ProbePoint.StackExpansionUnlocked]);
        Assert.Equal(1, probes[ProbePoint.StackExpanded]);
        Assert.Equal([(Stack - 3 * Page, Stack + 8 * Page)], Ranges(space));
        Assert.Equal(5L, grower.Load<long>(Stack - 3 * Page));
        TearDown(space, faulter, grower);
    }

    [Fact]
    public void AVmaLockFaultThatFoundTheOldStackMissesAndFindsTheGrownOne()
    {
        (AddressSpace space, Cpu faulter, Cpu grower) = Prepared(FaultPath.VmaLock);
        Vma old = space.Descriptor.Tree.LookupLockless(Stack)!;
        Dictionary<string, long> before = Counters(space);
        using var afterLookup = new ProbeGate(space, ProbePoint.VmaLockAfterLookup, ThreadRole.Is(Faulter));
        var fault = StoreOn(Faulter, faulter, Stack + 2 * Page, 7L);
        afterLookup.WaitArrived();

        Assert.Equal(AccessOutcome.Ok, StoreOn(Grower, grower, Stack - Page, 8L).Join());
        Assert.True(old.IsDetached); // replaced by the grown VMA
        afterLookup.Release();

        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(1, Delta(before, space, "vma_lock_miss"));
        Assert.Equal(1, Delta(before, space, "vma_lock_success"));
        Assert.Equal([(Stack - Page, Stack + 8 * Page)], Ranges(space));
        Assert.Equal(7L, grower.Load<long>(Stack + 2 * Page));
        Assert.Equal(8L, faulter.Load<long>(Stack - Page));
        TearDown(space, faulter, grower);
    }

    [Fact]
    public void AVmaLockFaultHoldingTheStacksReadLockMakesTheExpansionWait()
    {
        (AddressSpace space, Cpu faulter, Cpu grower) = Prepared(FaultPath.VmaLock);
        MemoryDescriptor mm = space.Descriptor;
        using var probes = new ProbeCounter(mm.Probes);
        using var locked = new ProbeGate(space, ProbePoint.VmaLockLocked, ThreadRole.Is(Faulter));
        var fault = StoreOn(Faulter, faulter, Stack + 2 * Page, 7L);
        locked.WaitArrived();

        long sleeps = mm.WriterWait.Sleeps;
        var grow = StoreOn(Grower, grower, Stack - Page, 8L);
        // vma_start_write inside expand_downwards waits for the reader before the start moves.
        ThreadRole.WaitUntil(() => mm.WriterWait.Sleeps > sleeps, "the expanding writer sleeps on the VMA reader");
        // The maps are not read here: reading them takes the mmap read lock, which the waiting writer holds.
        Assert.Equal(0, probes[ProbePoint.StackExpanded]);
        locked.Release();

        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(AccessOutcome.Ok, grow.Join());
        Assert.Equal(1, probes[ProbePoint.StackExpanded]);
        Assert.Equal([(Stack - Page, Stack + 8 * Page)], Ranges(space));
        Assert.Equal(7L, grower.Load<long>(Stack + 2 * Page));
        Assert.Equal(8L, faulter.Load<long>(Stack - Page));
        TearDown(space, faulter, grower);
    }

    [Fact]
    public void ASpeculativeFaultThatFoundTheOldStackSeesItChangedAndRetries()
    {
        (AddressSpace space, Cpu faulter, Cpu grower) = Prepared(FaultPath.Speculative);
        Dictionary<string, long> before = Counters(space);
        using var afterLookup = new ProbeGate(space, ProbePoint.SpeculativeAfterLookup, ThreadRole.Is(Faulter));
        var fault = StoreOn(Faulter, faulter, Stack + 2 * Page, 7L);
        afterLookup.WaitArrived();

        Assert.Equal(AccessOutcome.Ok, StoreOn(Grower, grower, Stack - 2 * Page, 8L).Join());
        afterLookup.Release();

        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(1, Delta(before, space, "spf_vma_changed")); // the old VMA is detached
        Assert.Equal(2, Delta(before, space, "spf_fallback"));    // the grower's fault found no VMA, this one a stale one
        Assert.Equal([(Stack - 2 * Page, Stack + 8 * Page)], Ranges(space));
        Assert.Equal(7L, grower.Load<long>(Stack + 2 * Page));
        TearDown(space, faulter, grower);
    }

    [Fact]
    public void AClassicFaultHoldingTheReadLockDelaysTheExpansionUntilItIsDone()
    {
        (AddressSpace space, Cpu faulter, Cpu grower) = Prepared(FaultPath.MmapLock);
        using var probes = new ProbeCounter(space.Descriptor.Probes);
        using var locked = new ProbeGate(space, ProbePoint.ClassicLocked, ThreadRole.Is(Faulter));
        var fault = StoreOn(Faulter, faulter, Stack + 2 * Page, 7L);
        locked.WaitArrived();

        var grow = StoreOn(Grower, grower, Stack - Page, 8L);
        // The grower dropped its read lock and sleeps in mmap_write_lock behind the faulting reader.
        ThreadRole.WaitUntil(() => space.Descriptor.MmapLock.HandoffWriter == grow.ManagedThreadId, "the grower sleeps for the write lock");
        Assert.Equal(1, probes[ProbePoint.StackExpansionUnlocked]);
        Assert.Equal(0, probes[ProbePoint.StackExpanded]);
        locked.Release();

        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(AccessOutcome.Ok, grow.Join());
        Assert.Equal([(Stack - Page, Stack + 8 * Page)], Ranges(space));
        Assert.Equal(8L, faulter.Load<long>(Stack - Page));
        TearDown(space, faulter, grower);
    }

    [Fact]
    public void AVmaLockFaultOnTheGrownPartDuringTheExpansionFindsItWriteLockedAndFallsBack()
    {
        (AddressSpace space, Cpu faulter, Cpu grower) = Prepared(FaultPath.VmaLock);
        Dictionary<string, long> before = Counters(space);
        ThreadRunner<AccessOutcome> grow;
        ThreadRunner<AccessOutcome> fault;
        using (var expanded = new ProbeGate(space, ProbePoint.StackExpanded, ThreadRole.Is(Grower)))
        {
            grow = StoreOn(Grower, grower, Stack - 4 * Page, 8L);
            expanded.WaitArrived(); // the grown VMA is published; the write lock and its VMA write locks are held
            Assert.True(space.Descriptor.MmapLock.IsWriteLocked);
            fault = StoreOn(Faulter, faulter, Stack - 2 * Page, 7L);
            ThreadRole.WaitUntil(() => Delta(before, space, "vma_lock_abort") == 2, "the fault found the grown VMA write-locked");
            Assert.False(fault.IsDone); // and waits on the classic path for the mmap lock
        }

        Assert.Equal(AccessOutcome.Ok, grow.Join());
        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(0, Delta(before, space, "vma_lock_success"));
        Assert.Equal(2, Delta(before, space, "mmap_lock_fault"));
        Assert.Equal([(Stack - 4 * Page, Stack + 8 * Page)], Ranges(space));
        Assert.Equal(7L, grower.Load<long>(Stack - 2 * Page));
        Assert.Equal(8L, faulter.Load<long>(Stack - 4 * Page));
        TearDown(space, faulter, grower);
    }

    [Theory]
    [InlineData(FaultPath.MmapLock, 3, 1)]   // the other grew past this address: found inside, no second expansion
    [InlineData(FaultPath.MmapLock, 1, 3)]
    [InlineData(FaultPath.VmaLock, 2, 2)]    // the same page
    [InlineData(FaultPath.Speculative, 3, 1)]
    public void TwoCpusGrowingAtOnceExpandOnceWhenTheFirstCoversTheSecond(FaultPath path, int stoppedPagesBelow, int otherPagesBelow)
    {
        (AddressSpace space, Cpu faulter, Cpu grower) = Prepared(path);
        using var probes = new ProbeCounter(space.Descriptor.Probes);
        ulong stopped = Stack - (ulong)stoppedPagesBelow * Page, other = Stack - (ulong)otherPagesBelow * Page;
        ThreadRunner<AccessOutcome> fault;
        using (var unlocked = new ProbeGate(space, ProbePoint.StackExpansionUnlocked, ThreadRole.Is(Faulter)))
        {
            fault = StoreOn(Faulter, faulter, stopped, 7L);
            unlocked.WaitArrived(); // read lock dropped, write lock not yet taken
            Assert.Equal(AccessOutcome.Ok, StoreOn(Grower, grower, other, 8L).Join());
            Assert.Equal(1, probes[ProbePoint.StackExpanded]);
        }

        Assert.Equal(AccessOutcome.Ok, fault.Join());
        // The stopped fault looked the VMA up again under the write lock; it expands only if still below.
        int expected = stoppedPagesBelow > otherPagesBelow ? 2 : 1;
        Assert.Equal(expected, probes[ProbePoint.StackExpanded]);
        ulong low = Math.Min(stopped, other);
        Assert.Equal([(low, Stack + 8 * Page)], Ranges(space));
        Assert.Equal(stopped == other ? 7L : 8L, faulter.Load<long>(other)); // the stopped store ran last
        Assert.Equal(7L, faulter.Load<long>(stopped));
        TearDown(space, faulter, grower);
    }

    [Fact]
    public void AStackUnmappedWhileTheFaultTakesTheWriteLockIsASegfaultAndNothingGrows()
    {
        (AddressSpace space, Cpu faulter, Cpu grower) = Prepared(FaultPath.MmapLock);
        using var probes = new ProbeCounter(space.Descriptor.Probes);
        ThreadRunner<AccessOutcome> fault;
        using (var unlocked = new ProbeGate(space, ProbePoint.StackExpansionUnlocked, ThreadRole.Is(Faulter)))
        {
            fault = StoreOn(Faulter, faulter, Stack - Page, 7L);
            unlocked.WaitArrived();
            space.Unmap(Stack, 8 * Page);
        }

        Assert.Equal(AccessOutcome.SegvMapErr, fault.Join());
        Assert.Equal(0, probes[ProbePoint.StackExpanded]);
        Assert.Empty(space.GetMappings());
        Assert.False(space.Descriptor.MmapLock.IsLocked);
        TearDown(space, faulter, grower);
    }

    [Fact]
    public void AMappingPlacedAtTheAddressWhileTheFaultTakesTheWriteLockTakesTheFault()
    {
        (AddressSpace space, Cpu faulter, Cpu grower) = Prepared(FaultPath.MmapLock);
        using var probes = new ProbeCounter(space.Descriptor.Probes);
        ThreadRunner<AccessOutcome> fault;
        using (var unlocked = new ProbeGate(space, ProbePoint.StackExpansionUnlocked, ThreadRole.Is(Faulter)))
        {
            fault = StoreOn(Faulter, faulter, Stack - 300 * Page, 7L);
            unlocked.WaitArrived();
            space.Map(Stack - 301 * Page, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        }

        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(0, probes[ProbePoint.StackExpanded]);
        Assert.Equal([(Stack - 301 * Page, Stack - 299 * Page), (Stack, Stack + 8 * Page)], Ranges(space));
        Assert.Equal(7L, grower.Load<long>(Stack - 300 * Page));
        TearDown(space, faulter, grower);
    }

    [Fact]
    public void AReverseMapWalkFromARelativeWaitsForTheReplacementAndFindsTheGrownStack()
    {
        // The parent's walk of a frame it shares with a forked child holds no mmap lock of the child. The child's
        // expansion takes the family lock before it unlinks the old VMA (anon_vma_lock_write), so the walk waits and
        // then finds the child's grown VMA, instead of running between the unlink and the link and missing the child.
        (AddressSpace parent, Cpu faulter, Cpu grower) = Prepared(FaultPath.MmapLock);
        AddressSpace child = parent.Fork();
        Cpu childCpu = child.AttachCpu();
        ulong shared = Stack + 7 * Page;
        Assert.Equal([new PageMapping(parent, shared), new PageMapping(child, shared)], parent.GetPageMappings(shared));

        using var threads = new ThreadScope();
        IReadOnlyList<PageMapping>? walked = null;
        Thread walker;
        using (var detaching = new ProbeGate(child, ProbePoint.VmaBeforeDetach, ThreadRole.Is(Grower)))
        {
            var grow = StoreOn(Grower, childCpu, Stack - Page, 3L);
            detaching.WaitArrived(); // the child's old stack is out of the tree and unlinked, the grown one not yet in
            walker = threads.Start(() => walked = parent.GetPageMappings(shared));
            ThreadRole.WaitUntil(() => (walker.ThreadState & ThreadState.WaitSleepJoin) != 0, "the walk waits for the family lock");
            Assert.Null(walked);
            detaching.Release();
            Assert.Equal(AccessOutcome.Ok, grow.Join());
        }

        Assert.True(walker.Join(30_000));
        Assert.Equal([new PageMapping(parent, shared), new PageMapping(child, shared)], walked);
        Assert.Equal([(Stack - Page, Stack + 8 * Page)], Ranges(child));
        childCpu.Dispose();
        child.Dispose();
        TearDown(parent, faulter, grower);
    }
}
