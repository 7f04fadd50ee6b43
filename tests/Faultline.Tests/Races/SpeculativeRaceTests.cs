using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// Deterministic races of the speculative fault path: a faulting thread is stopped at a named probe point,
/// a writer runs, the fault is released, and the test asserts the outcome together with the counters that prove which
/// path produced it. Every wait is bounded so a deadlock fails the test instead of hanging it.
/// </summary>
public sealed class SpeculativeRaceTests
{
    private const ulong Page = 4096;
    private const ulong PmdSpan = 2UL << 20;
    // 1 GiB: a PGD/PUD/PMD-aligned spot with nothing else mapped around it.
    private const ulong Base = 0x4000_0000;
    private const int JoinMs = 10_000;

    private static AddressSpace NewSpace(bool poison = false) => new(new FaultlineOptions
    {
        FaultPath = FaultPath.Speculative,
        PhysicalMemoryBytes = 64 << 20,
        SpeculativePageTableAllocation = true,
        PoisonFreedFrames = poison,
    });

    private static PteLocation Walk(AddressSpace space, ulong address)
    {
        Assert.Equal(WalkStatus.Ok, space.Descriptor.PageTable.WalkLockless(address, out PteLocation at, out _));
        return at;
    }

    public static TheoryData<string> ValidationPoints => new()
    {
        nameof(ProbePoint.SpeculativeAfterLookup),   // step 3: detached / odd sequence
        nameof(ProbePoint.SpeculativeAfterSnapshot), // step 7-8: walk, then read_seqcount_retry
        nameof(ProbePoint.SpeculativeBeforeHandle),  // pte_map_lock's vma_has_changed
        nameof(ProbePoint.SpeculativeBeforePteLock), // the last check before the PTE is installed
    };

    // Race 1: munmap of the VMA between the lock-free lookup and the PTE lock.
    [Theory]
    [MemberData(nameof(ValidationPoints))]
    public void UnmapDuringSpeculativeFaultRetriesThenMapErrAndLeavesNothingBehind(string point)
    {
        using var space = NewSpace();
        int framesBaseline = space.FramesInUse;
        int tablesBaseline = space.PageTablePages;
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu toucher = space.AttachCpu();
        using Cpu cpu = space.AttachCpu();
        toucher.Store(a, 1L); // gives the VMA its anon_vma and page tables (classic path)
        Assert.Equal(1, space.ResidentPages);
        Dictionary<string, long> before = Counters(space);

        var faulter = new Faulter();
        AccessOutcome outcome;
        using (var gate = new ProbeGate(space, Enum.Parse<ProbePoint>(point), faulter.IsCurrent))
        {
            ThreadRunner<AccessOutcome> fault = faulter.Start(() => cpu.TryStore(a + 5 * Page, 0x55L));
            gate.WaitArrived();
            space.Unmap(a, 16 * Page);
            gate.Release();
            outcome = fault.Join(JoinMs);
        }

        Assert.Equal(AccessOutcome.SegvMapErr, outcome);
        Assert.True(Delta(before, space, "spf_vma_changed") + Delta(before, space, "spf_pte_lock") >= 1, "the speculative attempt must see the VMA change");
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(0, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(1, Delta(before, space, "segv_maperr"));
        Assert.Equal(0, Delta(before, space, "anon_fault"));
        for (ulong p = a; p < a + 16 * Page; p += Page)
        {
            Assert.False(HasPte(space, p), $"PTE left behind at 0x{p:x}");
        }
        Assert.Equal(0, space.ResidentPages);
        Assert.Equal(tablesBaseline, space.PageTablePages);
        toucher.Dispose();
        cpu.Dispose();
        Assert.Equal(framesBaseline, space.FramesInUse);
    }

    // Race 2: mprotect to read-only between lookup and install: the write must not land through the old snapshot.
    [Theory]
    [MemberData(nameof(ValidationPoints))]
    public void ProtectReadOnlyDuringSpeculativeWriteRetriesThenAccErr(string point)
    {
        using var space = NewSpace();
        int framesBaseline = space.FramesInUse;
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu toucher = space.AttachCpu();
        using Cpu cpu = space.AttachCpu();
        toucher.Store(a, 1L);
        Dictionary<string, long> before = Counters(space);

        var faulter = new Faulter();
        AccessOutcome outcome;
        using (var gate = new ProbeGate(space, Enum.Parse<ProbePoint>(point), faulter.IsCurrent))
        {
            ThreadRunner<AccessOutcome> fault = faulter.Start(() => cpu.TryStore(a + 5 * Page, 0x55L));
            gate.WaitArrived();
            space.Protect(a, 16 * Page, Protection.Read);
            gate.Release();
            outcome = fault.Join(JoinMs);
        }

        Assert.Equal(AccessOutcome.SegvAccErr, outcome);
        Assert.True(Delta(before, space, "spf_vma_changed") + Delta(before, space, "spf_pte_lock") >= 1);
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(0, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(0, Delta(before, space, "spf_vma_access"));
        Assert.Equal(1, Delta(before, space, "segv_accerr"));
        Assert.Equal(0, Delta(before, space, "anon_fault"));
        Assert.False(space.IsResident(a + 5 * Page));
        Assert.Equal(1, space.ResidentPages);
        Assert.Equal(AccessOutcome.Ok, cpu.TryLoad(a + 5 * Page, out long value));
        Assert.Equal(0L, value);

        space.Unmap(a, 16 * Page);
        toucher.Dispose();
        cpu.Dispose();
        Assert.Equal(framesBaseline, space.FramesInUse);
    }

    // Race 3: the VMA is split (mprotect of its middle) mid-fault: the sequence moved, RETRY, then the classic path
    // completes the write in the left piece.
    [Theory]
    [MemberData(nameof(ValidationPoints))]
    public void SplitDuringSpeculativeFaultRetriesThenWriteLands(string point)
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu toucher = space.AttachCpu();
        using Cpu cpu = space.AttachCpu();
        toucher.Store(a, 1L);
        Vma original = space.Descriptor.Tree.LookupLockless(a)!;
        Dictionary<string, long> before = Counters(space);

        var faulter = new Faulter();
        AccessOutcome outcome;
        using (var gate = new ProbeGate(space, Enum.Parse<ProbePoint>(point), faulter.IsCurrent))
        {
            ThreadRunner<AccessOutcome> fault = faulter.Start(() => cpu.TryStore(a + 2 * Page + 8, 0x0123_4567_89AB_CDEFL));
            gate.WaitArrived();
            space.Protect(a + 8 * Page, 4 * Page, Protection.Read);
            gate.Release();
            outcome = fault.Join(JoinMs);
        }

        Assert.Equal(AccessOutcome.Ok, outcome);
        Assert.True(original.IsDetached);
        Assert.Equal(3, space.MapCount);
        Assert.True(Delta(before, space, "spf_vma_changed") + Delta(before, space, "spf_pte_lock") >= 1);
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(0, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(1, Delta(before, space, "mmap_lock_fault"));
        Assert.Equal(1, Delta(before, space, "anon_fault"));
        Assert.Equal(0x0123_4567_89AB_CDEFL, cpu.Load<long>(a + 2 * Page + 8));
        Assert.Equal(0x0123_4567_89AB_CDEFL, toucher.Load<long>(a + 2 * Page + 8));
        Assert.Equal(2, space.ResidentPages);
    }

    // Race 4: a writer holds a PTE table lock while it waits for a grace period (the forced TLB flush of a full
    // mmu_gather inside zap_pte_range); a speculative fault in another VMA sharing that PTE table must not block on
    // the lock inside its read section (the SPF TLB-IPI deadlock), only trylock, leave the section, and retry.
    [Fact]
    public void WriterWaitingForGracePeriodUnderPteLockDoesNotDeadlockSpeculativeFault()
    {
        using var space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        mm.GatherBatchLimit = 512;
        ulong shared = Base + PmdSpan;                // PTE table T covers [shared, shared + 2 MiB)
        ulong victim = shared - 300 * Page;           // 300 pages in the table before T, 300 in T
        ulong victimLength = 600 * Page;
        ulong other = shared + 400 * Page;            // a separate VMA in T (the gap prevents a merge)
        MapFixed(space, victim, victimLength);
        MapFixed(space, other, 50 * Page);
        Assert.Equal(2, space.MapCount);
        using Cpu toucher = space.AttachCpu();
        using Cpu cpu = space.AttachCpu();
        for (ulong p = victim; p < victim + victimLength; p += Page)
        {
            toucher.Store(p, (long)p);
        }
        toucher.Store(other, 1L);
        long table = Walk(space, other + 10 * Page).PteTable;
        Assert.Equal(table, Walk(space, shared).PteTable);
        Dictionary<string, long> before = Counters(space);

        var writer = new Faulter();
        var faulter = new Faulter();
        using var trylockFailures = new ProbeCounter(space, ProbePoint.SpeculativePteTrylockFailed);
        using var gate = new ProbeGate(space, ProbePoint.GatherBeforeGracePeriod, writer.IsCurrent);
        ThreadRunner<bool> unmap = writer.Start(() =>
        {
            space.Unmap(victim, victimLength);
            return true;
        });
        gate.WaitArrived();
        // With a batch of 512, 300 frames from the first table + 212 from T fill it: the flush happens holding T's lock.
        Assert.True(SpinWord.IsHeld(ref mm.PageTable.PteLock(table)), "staging: the writer must hold the shared PTE table's lock");

        ThreadRunner<AccessOutcome> fault = faulter.Start(() => cpu.TryStore(other + 10 * Page, 0x4444L));
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref trylockFailures.Hits) >= 3, JoinMs), "the fault never tried the PTE lock");
        Assert.False(fault.IsDone);
        gate.Release();

        Assert.True(unmap.Join(JoinMs));
        Assert.Equal(AccessOutcome.Ok, fault.Join(JoinMs));
        Assert.True(Delta(before, space, "spf_trylock_retry") >= 3);
        Assert.Equal(1, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(0, Delta(before, space, "spf_fallback"));
        Assert.Equal(0x4444L, toucher.Load<long>(other + 10 * Page));
        Assert.False(HasPte(space, victim));
        Assert.False(HasPte(space, shared + 299 * Page));
        Assert.Equal(2, space.ResidentPages);
    }

    // Race 5: munmap frees the page tables a speculative walk is reading. The walk runs inside the Cpu read section,
    // so the writer must wait in the grace period until the fault leaves it; the fault then RETRYs and never uses the
    // freed (poisoned) table.
    [Fact]
    public void UnmapWaitsForSpeculativeWalkBeforeFreeingTablesAndFaultRetries()
    {
        using var space = NewSpace(poison: true);
        MemoryDescriptor mm = space.Descriptor;
        int framesBaseline = space.FramesInUse;
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu toucher = space.AttachCpu();
        using Cpu cpu = space.AttachCpu();
        toucher.Store(a, 1L);
        long pteTable = Walk(space, a).PteTable;
        Dictionary<string, long> before = Counters(space);

        var faulter = new Faulter();
        var writer = new Faulter();
        using var graceWaits = new ProbeCounter(space, ProbePoint.GatherBeforeGracePeriod);
        using var gate = new ProbeGate(space, ProbePoint.SpeculativeInWalk, faulter.IsCurrent);
        ThreadRunner<AccessOutcome> fault = faulter.Start(() => cpu.TryStore(a + 5 * Page, 0x55L));
        gate.WaitArrived();
        ThreadRunner<bool> unmap = writer.Start(() =>
        {
            space.Unmap(a, 16 * Page);
            return true;
        });
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref graceWaits.Hits) >= 1, JoinMs), "the unmap never reached its grace period");
        Assert.False(SpinWait.SpinUntil(() => unmap.IsDone, 200), "munmap finished while a speculative walk was inside its read section");
        Assert.Equal(FrameKind.PageTable, mm.Memory.Info(pteTable).Kind);
        gate.Release();

        Assert.True(unmap.Join(JoinMs));
        Assert.Equal(AccessOutcome.SegvMapErr, fault.Join(JoinMs));
        Assert.Equal(FrameKind.Free, mm.Memory.Info(pteTable).Kind);
        Assert.True(Delta(before, space, "spf_vma_changed") >= 1);
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(0, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(0, Delta(before, space, "anon_fault"));
        Assert.Equal(0, space.ResidentPages);
        Assert.Equal(1, space.PageTablePages);

        // The address range is fresh again: no stale translation or poisoned frame shows through.
        MapFixed(space, a, 16 * Page);
        Assert.Equal(AccessOutcome.Ok, cpu.TryLoad(a + 5 * Page, out long value));
        Assert.Equal(0L, value);
        space.Unmap(a, 16 * Page);
        toucher.Dispose();
        cpu.Dispose();
        Assert.Equal(framesBaseline, space.FramesInUse);
    }

    // Race 6: two Cpus fault the same page; one frame is installed, the loser gives its frame back.
    [Fact]
    public void TwoSpeculativeFaultsOnOnePageInstallOneFrame()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 16 * Page);
        using (Cpu alone = space.AttachCpu())
        {
            alone.Store(a, 1L); // anon_vma and tables, on the classic path
        }
        int framesBaseline = space.FramesInUse; // frame caches drained
        Cpu first = space.AttachCpu();
        Cpu second = space.AttachCpu();
        Dictionary<string, long> before = Counters(space);

        var faulter = new Faulter();
        using (var gate = new ProbeGate(space, ProbePoint.AnonymousBeforePteLock, faulter.IsCurrent))
        {
            ThreadRunner<AccessOutcome> fault = faulter.Start(() => first.TryStore(a + 3 * Page, 0x1111L));
            gate.WaitArrived(); // its frame is allocated and zeroed, the PTE still empty
            Assert.Equal(AccessOutcome.Ok, second.TryStore(a + 3 * Page + 8, 0x2222L));
            gate.Release();
            Assert.Equal(AccessOutcome.Ok, fault.Join(JoinMs));
        }

        Assert.Equal(1, Delta(before, space, "fault_race_lost"));
        Assert.Equal(1, Delta(before, space, "anon_fault"));
        Assert.Equal(2, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(0, Delta(before, space, "spf_fallback"));
        foreach (Cpu cpu in new[] { first, second })
        {
            Assert.Equal(0x1111L, cpu.Load<long>(a + 3 * Page));
            Assert.Equal(0x2222L, cpu.Load<long>(a + 3 * Page + 8));
        }
        Assert.Equal(2, space.ResidentPages);
        first.Dispose();
        second.Dispose();
        Assert.Equal(framesBaseline + 1, space.FramesInUse);
    }

    // Race 8a: munmap between allocating a page table speculatively and installing it under page_table_lock.
    [Fact]
    public void UnmapBeforeSpeculativeTableInstallRetriesAndLeaksNoTable()
    {
        using var space = NewSpace();
        int framesBaseline = space.FramesInUse;
        int tablesBaseline = space.PageTablePages;
        ulong a = MapFixed(space, Base, 2 * PmdSpan);
        using Cpu toucher = space.AttachCpu();
        using Cpu cpu = space.AttachCpu();
        toucher.Store(a, 1L); // tables for the first 2 MiB only
        Dictionary<string, long> before = Counters(space);

        var faulter = new Faulter();
        AccessOutcome outcome;
        using (var gate = new ProbeGate(space, ProbePoint.SpeculativeBeforeTableInstall, faulter.IsCurrent))
        {
            ThreadRunner<AccessOutcome> fault = faulter.Start(() => cpu.TryStore(a + PmdSpan + 5 * Page, 0x55L));
            gate.WaitArrived(); // a fresh PTE table is allocated, not yet hooked
            space.Unmap(a, 2 * PmdSpan);
            Assert.Equal(tablesBaseline, space.PageTablePages);
            gate.Release();
            outcome = fault.Join(JoinMs);
        }

        Assert.Equal(AccessOutcome.SegvMapErr, outcome);
        Assert.True(Delta(before, space, "spf_vma_changed") >= 1);
        Assert.Equal(0, Delta(before, space, "spf_table_alloc"));
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(tablesBaseline, space.PageTablePages);
        toucher.Dispose();
        cpu.Dispose();
        Assert.Equal(framesBaseline, space.FramesInUse);
    }

    // Race 8b: the table was installed (VMA still valid) and munmap runs before the PTE is set: free_pgtables must
    // find and free the freshly installed table.
    [Fact]
    public void UnmapAfterSpeculativeTableInstallFreesTheNewTable()
    {
        using var space = NewSpace();
        int framesBaseline = space.FramesInUse;
        int tablesBaseline = space.PageTablePages;
        ulong a = MapFixed(space, Base, 2 * PmdSpan);
        using Cpu toucher = space.AttachCpu();
        using Cpu cpu = space.AttachCpu();
        toucher.Store(a, 1L);
        int tablesBefore = space.PageTablePages;
        Dictionary<string, long> before = Counters(space);

        var faulter = new Faulter();
        AccessOutcome outcome;
        using (var gate = new ProbeGate(space, ProbePoint.SpeculativeBeforeHandle, faulter.IsCurrent))
        {
            ThreadRunner<AccessOutcome> fault = faulter.Start(() => cpu.TryStore(a + PmdSpan + 5 * Page, 0x55L));
            gate.WaitArrived();
            Assert.Equal(tablesBefore + 1, space.PageTablePages);
            space.Unmap(a, 2 * PmdSpan);
            gate.Release();
            outcome = fault.Join(JoinMs);
        }

        Assert.Equal(AccessOutcome.SegvMapErr, outcome);
        Assert.Equal(1, Delta(before, space, "spf_table_alloc"));
        Assert.True(Delta(before, space, "spf_vma_changed") >= 1);
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(tablesBaseline, space.PageTablePages);
        toucher.Dispose();
        cpu.Dispose();
        Assert.Equal(framesBaseline, space.FramesInUse);
    }

    // Race 8c: the fault validated the VMA under page_table_lock and is about to hook a new table when munmap runs.
    // free_pgtables must serialise with that install (read the slot under page_table_lock), or it skips the still
    // empty slot and the table hooked a moment later is never freed.
    [Fact]
    public void UnmapRacingALockedSpeculativeTableInstallLeaksNoTable()
    {
        using var space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        int framesBaseline = space.FramesInUse;
        int tablesBaseline = space.PageTablePages;
        ulong a = MapFixed(space, Base, 16 * Page);
        // Stage a VMA that has an anon_vma but no page tables yet (as after a fault elsewhere in a merged VMA).
        mm.MmapLock.EnterWrite();
        try
        {
            mm.Tree.FindContaining(a)!.AnonVma = new AnonVma();
        }
        finally
        {
            mm.MmapLock.ExitWrite();
        }
        using Cpu other = space.AttachCpu();
        using Cpu cpu = space.AttachCpu();
        Dictionary<string, long> before = Counters(space);

        var faulter = new Faulter();
        var writer = new Faulter();
        bool unmapFinishedDuringInstall;
        AccessOutcome outcome;
        using (var gate = new ProbeGate(space, ProbePoint.SpeculativeTableInstallLocked, faulter.IsCurrent))
        {
            ThreadRunner<AccessOutcome> fault = faulter.Start(() => cpu.TryStore(a + 5 * Page, 0x55L));
            gate.WaitArrived(); // page_table_lock held, VMA validated, the PUD table not yet hooked
            ThreadRunner<bool> unmap = writer.Start(() =>
            {
                space.Unmap(a, 16 * Page);
                return true;
            });
            unmapFinishedDuringInstall = SpinWait.SpinUntil(() => unmap.IsDone, 300);
            gate.Release();
            Assert.True(unmap.Join(JoinMs));
            outcome = fault.Join(JoinMs);
        }

        Assert.Equal(AccessOutcome.SegvMapErr, outcome);
        Assert.True(Delta(before, space, "spf_vma_changed") >= 1);
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.True(tablesBaseline == space.PageTablePages,
            $"page tables leaked: {space.PageTablePages} in use, {tablesBaseline} expected (munmap finished while the install was in flight: {unmapFinishedDuringInstall})");
        other.Dispose();
        cpu.Dispose();
        Assert.Equal(framesBaseline, space.FramesInUse);
    }

    // Race 8d: the speculative table allocation walks upper tables outside any read section; munmap frees (and
    // poisons) the table it is about to read. The fault must notice the VMA change before following anything it read
    // from that table.
    [Fact]
    public void UnmapFreeingAnUpperTableUnderTheAllocatingWalkRetries()
    {
        using var space = NewSpace(poison: true);
        int framesBaseline = space.FramesInUse;
        int tablesBaseline = space.PageTablePages;
        ulong a = MapFixed(space, Base, 2 * PmdSpan);
        using Cpu toucher = space.AttachCpu();
        using Cpu cpu = space.AttachCpu();
        toucher.Store(a, 1L); // PUD, PMD and the first PTE table exist; the second 2 MiB has none
        Dictionary<string, long> before = Counters(space);

        var faulter = new Faulter();
        AccessOutcome outcome;
        using (var gate = new ProbeGate(space, ProbePoint.SpeculativeAllocWalkLevel, faulter.IsCurrent))
        {
            ThreadRunner<AccessOutcome> fault = faulter.Start(() => cpu.TryStore(a + PmdSpan + 5 * Page, 0x55L));
            gate.WaitArrived(); // the PUD table's frame is in hand, its entry not yet read
            space.Unmap(a, 2 * PmdSpan); // frees every table below the root and poisons them
            gate.Release();
            outcome = fault.Join(JoinMs);
        }

        Assert.Equal(AccessOutcome.SegvMapErr, outcome);
        Assert.True(Delta(before, space, "spf_vma_changed") >= 1);
        Assert.Equal(0, Delta(before, space, "spf_table_alloc"));
        Assert.Equal(tablesBaseline, space.PageTablePages);
        toucher.Dispose();
        cpu.Dispose();
        Assert.Equal(framesBaseline, space.FramesInUse);
    }

    /// <summary>Runs a body on its own thread and lets a probe filter recognise that thread.</summary>
    private sealed class Faulter
    {
        private int _threadId = -1;

        public bool IsCurrent() => Environment.CurrentManagedThreadId == Volatile.Read(ref _threadId);

        public ThreadRunner<T> Start<T>(Func<T> body) => new(() =>
        {
            Volatile.Write(ref _threadId, Environment.CurrentManagedThreadId);
            return body();
        });
    }

    /// <summary>Counts hits of a probe point without stopping anyone; chains to the previous handler.</summary>
    private sealed class ProbeCounter : IDisposable
    {
        private readonly ProbeSet _probes;
        private readonly Action<ProbePoint>? _previous;

        public int Hits;

        public ProbeCounter(AddressSpace space, ProbePoint point)
        {
            _probes = space.Descriptor.Probes;
            _previous = _probes.Handler;
            _probes.Handler = p =>
            {
                _previous?.Invoke(p);
                if (p == point)
                {
                    Interlocked.Increment(ref Hits);
                }
            };
        }

        public void Dispose() => _probes.Handler = _previous;
    }
}
