using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// A moving mremap against faults that run without the mmap lock: a speculative fault stopped after it found the VMA
/// or after it walked to the PTE table (which may itself move, a whole PMD at a time), and a VMA-lock fault stopped
/// before or after it locked the VMA, while another thread moves the mapping. Each ends with the fault retried or
/// waited for, the page at its new address with its contents, the old address faulting as Linux's does (SIGSEGV once
/// unmapped, a fresh zero page after MREMAP_DONTUNMAP), and no frame or table leaked.
/// </summary>
public sealed class MremapRaceTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong PmdSpan = PageGeometry.PmdSize;
    // PMD-aligned, with nothing else mapped near either.
    private const ulong Base = 0x4000_0000;
    private const ulong Far = 0x4000_0000 + 8 * PmdSpan;
    private const string Faulting = "faulter";
    private const string Writer = "writer";

    private static AddressSpace NewSpace(FaultPath path) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 64 << 20, SpeculativePageTableAllocation = true });

    public static TheoryData<string> SpeculativePoints => new()
    {
        nameof(ProbePoint.SpeculativeAfterLookup),   // found the VMA, sequence not read yet
        nameof(ProbePoint.SpeculativeAfterSnapshot), // sequence validated, before the walk
        nameof(ProbePoint.SpeculativeBeforeHandle),  // walked to the PTE table, before pte_map_lock
        nameof(ProbePoint.SpeculativeBeforePteLock), // frame allocated, the last check before the install
    };

    // The mapping is one whole PMD, so the move re-hooks its PTE table at the destination (move_normal_pmd); the fault
    // that walked to it holds that table.
    [Theory]
    [MemberData(nameof(SpeculativePoints))]
    public void SpeculativeFaultRacingAWholePmdMoveRetriesAndTheOldAddressIsUnmapped(string point)
    {
        using var stage = new Stage(FaultPath.Speculative, Base, PmdSpan);
        (AddressSpace space, ulong a, Cpu toucher, Cpu cpu) = (stage.Space, stage.A, stage.Toucher, stage.Cpu);
        toucher.Store(a, 11L);
        Assert.Equal(WalkStatus.Ok, space.Descriptor.PageTable.WalkLockless(a, out PteLocation table, out _));
        Dictionary<string, long> before = Counters(space);

        AccessOutcome outcome = stage.StoreStoppedAt(Enum.Parse<ProbePoint>(point),
            () => Assert.Equal(Far, space.Remap(a, PmdSpan, PmdSpan, RemapFlags.MayMove | RemapFlags.Fixed, Far)));

        Assert.Equal(AccessOutcome.SegvMapErr, outcome);
        Assert.True(Delta(before, space, "spf_vma_changed") + Delta(before, space, "spf_pte_lock") >= 1, "the speculative attempt must see the move");
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(0, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(0, Delta(before, space, "anon_fault"));
        // The table moved as a whole, and nothing was installed in it for the faulting address.
        Assert.Equal(WalkStatus.Ok, space.Descriptor.PageTable.WalkLockless(Far, out PteLocation moved, out _));
        Assert.Equal(table.PteTable, moved.PteTable);
        Assert.False(HasPte(space, Far + 5 * Page));
        Assert.False(HasPte(space, a));
        Assert.Equal(11L, cpu.Load<long>(Far));
        Assert.Equal(1, space.ResidentPages);
        stage.TearDown(Far, PmdSpan);
    }

    // A partial move goes PTE by PTE under both tables' locks (move_ptes).
    [Theory]
    [MemberData(nameof(SpeculativePoints))]
    public void SpeculativeFaultRacingAPteByPteMoveRetriesAndTheOldAddressIsUnmapped(string point)
    {
        using var stage = new Stage(FaultPath.Speculative, Base, 16 * Page);
        (AddressSpace space, ulong a, Cpu toucher, Cpu cpu) = (stage.Space, stage.A, stage.Toucher, stage.Cpu);
        toucher.Store(a, 11L);
        toucher.Store(a + 9 * Page, 99L);
        Dictionary<string, long> before = Counters(space);

        ulong target = Far + 3 * Page;
        AccessOutcome outcome = stage.StoreStoppedAt(Enum.Parse<ProbePoint>(point),
            () => Assert.Equal(target, space.Remap(a, 16 * Page, 16 * Page, RemapFlags.MayMove | RemapFlags.Fixed, target)));

        Assert.Equal(AccessOutcome.SegvMapErr, outcome);
        Assert.True(Delta(before, space, "spf_vma_changed") + Delta(before, space, "spf_pte_lock") >= 1);
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(0, Delta(before, space, "anon_fault"));
        for (ulong p = a; p < a + 16 * Page; p += Page)
        {
            Assert.False(HasPte(space, p), $"PTE left behind at 0x{p:x}");
        }
        Assert.False(HasPte(space, target + 5 * Page));
        Assert.Equal(11L, cpu.Load<long>(target));
        Assert.Equal(99L, cpu.Load<long>(target + 9 * Page));
        Assert.Equal(2, space.ResidentPages);
        stage.TearDown(target, 16 * Page);
    }

    // The fault validates while the move is halfway: the table holding its address was already moved (empty) and
    // the writer is stopped in the next table, before its flush. The source VMA's sequence is open from the start of
    // the move, so pte_map_lock's re-check fails; without it the store would land at the old address, to be zapped.
    [Fact]
    public void SpeculativeFaultValidatingWhileTheMoveIsHalfwayRetries()
    {
        // Pages 0-7 in one PTE table, 8-15 in the next.
        using var stage = new Stage(FaultPath.Speculative, Base + PmdSpan - 8 * Page, 16 * Page);
        (AddressSpace space, ulong a, Cpu toucher, Cpu cpu) = (stage.Space, stage.A, stage.Toucher, stage.Cpu);
        // The first table exists but maps nothing (so moving it hits no flush); the second maps page 12.
        toucher.Store(a + Page, 1L);
        space.Advise(a + Page, Page, Advice.DontNeed);
        toucher.Store(a + 12 * Page, 12L);
        Dictionary<string, long> before = Counters(space);
        ulong target = Far + 3 * Page;

        ThreadRunner<AccessOutcome> fault;
        ThreadRunner<ulong> writer;
        using (var walked = new ProbeGate(space, ProbePoint.SpeculativeBeforeHandle, ThreadRole.Is(Faulting)))
        using (var moving = new ProbeGate(space, ProbePoint.RemapMovedBeforeFlush, ThreadRole.Is(Writer)))
        {
            fault = ThreadRole.Run(Faulting, () => cpu.TryStore(a + 5 * Page, 0x55L));
            walked.WaitArrived();
            writer = ThreadRole.Run(Writer, () => space.Remap(a, 16 * Page, 16 * Page, RemapFlags.MayMove | RemapFlags.Fixed, target));
            moving.WaitArrived();
            walked.Release();
            ThreadRole.WaitUntil(() => Delta(before, space, "spf_fallback") == 1, "the speculative fault to fall back");
            moving.Release();
        }

        Assert.Equal(target, writer.Join());
        Assert.Equal(AccessOutcome.SegvMapErr, fault.Join());
        Assert.Equal(0, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(12L, cpu.Load<long>(target + 12 * Page));
        Assert.False(HasPte(space, target + 5 * Page));
        Assert.Equal(1, space.ResidentPages);
        stage.TearDown(target, 16 * Page);
    }

    // MREMAP_DONTUNMAP keeps the old VMA: the fault retries on the classic path and gets a fresh zero page there.
    [Theory]
    [MemberData(nameof(SpeculativePoints))]
    public void SpeculativeFaultRacingADontUnmapMoveLandsInAFreshPageOfTheOldRange(string point)
    {
        using var stage = new Stage(FaultPath.Speculative, Base, 16 * Page);
        (AddressSpace space, ulong a, Cpu toucher, Cpu cpu) = (stage.Space, stage.A, stage.Toucher, stage.Cpu);
        toucher.Store(a, 11L);
        Dictionary<string, long> before = Counters(space);

        AccessOutcome outcome = stage.StoreStoppedAt(Enum.Parse<ProbePoint>(point),
            () => Assert.Equal(Far, space.Remap(a, 16 * Page, 16 * Page, RemapFlags.MayMove | RemapFlags.Fixed | RemapFlags.DontUnmap, Far)));

        Assert.Equal(AccessOutcome.Ok, outcome);
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(0, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(1, Delta(before, space, "mmap_lock_fault"));
        Assert.Equal(0x55L, toucher.Load<long>(a + 5 * Page));
        Assert.Equal(0L, toucher.Load<long>(a));
        Assert.Equal(11L, toucher.Load<long>(Far));
        Assert.Equal(0L, toucher.Load<long>(Far + 5 * Page));
        space.Unmap(a, 16 * Page);
        stage.TearDown(Far, 16 * Page);
    }

    // The writer is stopped with the entries moved and the page-table locks held, before its TLB flush: a speculative
    // fault in the source must not block on a lock inside its read section (the flush waits for that section).
    [Fact]
    public void SpeculativeFaultWhileTheMoverFlushesUnderThePteLockFallsBackWithoutDeadlock()
    {
        using var stage = new Stage(FaultPath.Speculative, Base, 16 * Page);
        (AddressSpace space, ulong a, Cpu toucher, Cpu cpu) = (stage.Space, stage.A, stage.Toucher, stage.Cpu);
        toucher.Store(a, 11L);
        Dictionary<string, long> before = Counters(space);

        ThreadRunner<AccessOutcome> fault;
        ThreadRunner<ulong> writer;
        using (var gate = new ProbeGate(space, ProbePoint.RemapMovedBeforeFlush, ThreadRole.Is(Writer)))
        {
            writer = ThreadRole.Run(Writer, () => space.Remap(a, 16 * Page, 16 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Far));
            gate.WaitArrived();
            fault = ThreadRole.Run(Faulting, () => cpu.TryStore(a + 5 * Page, 0x55L));
            // The fault cannot finish while the writer holds the mmap lock; it must reach the classic path's wait.
            ThreadRole.WaitUntil(() => Delta(before, space, "spf_fallback") == 1, "the speculative fault to fall back");
            Assert.False(fault.IsDone);
            gate.Release();
        }

        Assert.Equal(Far, writer.Join());
        Assert.Equal(AccessOutcome.SegvMapErr, fault.Join());
        Assert.Equal(11L, cpu.Load<long>(Far));
        Assert.False(HasPte(space, a));
        stage.TearDown(Far, 16 * Page);
    }

    // Found, not yet locked: the move detaches the VMA, vma_start_read misses, the lookup finds nothing, and the
    // classic path answers SIGSEGV.
    [Fact]
    public void VmaLockFaultThatFoundTheVmaBeforeTheMoveMissesThenFaultsAsUnmapped()
    {
        using var stage = new Stage(FaultPath.VmaLock, Base, 16 * Page);
        (AddressSpace space, ulong a, Cpu toucher, Cpu cpu) = (stage.Space, stage.A, stage.Toucher, stage.Cpu);
        toucher.Store(a, 11L);
        Dictionary<string, long> before = Counters(space);

        AccessOutcome outcome = stage.StoreStoppedAt(ProbePoint.VmaLockAfterLookup,
            () => Assert.Equal(Far, space.Remap(a, 16 * Page, 16 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Far)));

        Assert.Equal(AccessOutcome.SegvMapErr, outcome);
        Assert.Equal(1, Delta(before, space, "vma_lock_miss"));
        Assert.Equal(0, Delta(before, space, "vma_lock_success"));
        Assert.Equal(0, Delta(before, space, "anon_fault"));
        Assert.Equal(11L, cpu.Load<long>(Far));
        Assert.False(HasPte(space, Far + 5 * Page));
        stage.TearDown(Far, 16 * Page);
    }

    // Locked first: the move's vma_start_write waits for the reader, whose page is installed at the old address and
    // then moved with the rest.
    [Fact]
    public void VmaLockFaultHoldingTheLockFinishesFirstAndItsPageMoves()
    {
        using var stage = new Stage(FaultPath.VmaLock, Base, 16 * Page);
        (AddressSpace space, ulong a, Cpu toucher, Cpu cpu) = (stage.Space, stage.A, stage.Toucher, stage.Cpu);
        toucher.Store(a, 11L);
        Dictionary<string, long> before = Counters(space);

        ThreadRunner<AccessOutcome> fault;
        ThreadRunner<ulong> writer;
        using (var locked = new ProbeGate(space, ProbePoint.VmaLockLocked, ThreadRole.Is(Faulting)))
        using (var waiting = new ProbeGate(space, ProbePoint.VmaWriterWaiting, ThreadRole.Is(Writer)))
        {
            fault = ThreadRole.Run(Faulting, () => cpu.TryStore(a + 5 * Page, 0x55L));
            locked.WaitArrived();
            writer = ThreadRole.Run(Writer, () => space.Remap(a, 16 * Page, 16 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Far));
            waiting.WaitArrived();
            waiting.Release();
            Assert.False(writer.IsDone);
            locked.Release();
            Assert.Equal(AccessOutcome.Ok, fault.Join());
        }

        Assert.Equal(Far, writer.Join());
        Assert.Equal(1, Delta(before, space, "vma_lock_success"));
        Assert.Equal(0x55L, cpu.Load<long>(Far + 5 * Page));
        Assert.Equal(11L, cpu.Load<long>(Far));
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(a + 5 * Page, out long _));
        Assert.Equal(2, space.ResidentPages);
        stage.TearDown(Far, 16 * Page);
    }

    // MREMAP_DONTUNMAP of the whole VMA replaces the old one (its anon_vma goes): the reader misses, finds the
    // replacement, and its store lands in a fresh page of the old range.
    [Fact]
    public void VmaLockFaultRacingADontUnmapMoveLandsInAFreshPageOfTheOldRange()
    {
        using var stage = new Stage(FaultPath.VmaLock, Base, 16 * Page);
        (AddressSpace space, ulong a, Cpu toucher, Cpu cpu) = (stage.Space, stage.A, stage.Toucher, stage.Cpu);
        toucher.Store(a, 11L);
        Dictionary<string, long> before = Counters(space);

        AccessOutcome outcome = stage.StoreStoppedAt(ProbePoint.VmaLockAfterLookup,
            () => Assert.Equal(Far, space.Remap(a, 16 * Page, 16 * Page, RemapFlags.MayMove | RemapFlags.Fixed | RemapFlags.DontUnmap, Far)));

        Assert.Equal(AccessOutcome.Ok, outcome);
        Assert.Equal(1, Delta(before, space, "vma_lock_miss"));
        Assert.Equal(0x55L, toucher.Load<long>(a + 5 * Page));
        Assert.Equal(0L, toucher.Load<long>(a));
        Assert.Equal(11L, toucher.Load<long>(Far));
        Assert.Equal(0L, toucher.Load<long>(Far + 5 * Page));
        Assert.Equal([new PageMapping(space, a + 5 * Page)], space.GetPageMappings(a + 5 * Page));
        space.Unmap(a, 16 * Page);
        stage.TearDown(Far, 16 * Page);
    }

    // One staged race: an address space on a fault path with one mapping, a Cpu that prepares its pages, the Cpu whose
    // fault is stopped, and the frame and table counts from before the mapping, which TearDown checks against.
    private sealed class Stage : IDisposable
    {
        private readonly int _framesBaseline;
        private readonly int _tablesBaseline;

        public Stage(FaultPath path, ulong start, ulong length)
        {
            Space = NewSpace(path);
            _framesBaseline = Space.FramesInUse;
            _tablesBaseline = Space.PageTablePages;
            A = MapFixed(Space, start, length);
            Toucher = Space.AttachCpu();
            Cpu = Space.AttachCpu();
        }

        public AddressSpace Space { get; }

        public ulong A { get; }

        public Cpu Toucher { get; }

        public Cpu Cpu { get; }

        // The faulting Cpu stores 0x55 five pages into the mapping, stopped at `point` while `writer` runs on this
        // thread; then it goes on, and its outcome is returned.
        public AccessOutcome StoreStoppedAt(ProbePoint point, Action writer)
        {
            using var gate = new ProbeGate(Space, point, ThreadRole.Is(Faulting));
            ThreadRunner<AccessOutcome> fault = ThreadRole.Run(Faulting, () => Cpu.TryStore(A + 5 * Page, 0x55L));
            gate.WaitArrived();
            writer();
            gate.Release();
            return fault.Join();
        }

        // Unmaps what is left, detaches the Cpus and checks that every frame and table went back.
        public void TearDown(ulong start, ulong length)
        {
            Space.Unmap(start, length);
            Assert.Equal(0, Space.ResidentPages);
            Assert.Equal(0, Space.MapCount);
            Assert.Equal(_tablesBaseline, Space.PageTablePages);
            Toucher.Dispose();
            Cpu.Dispose();
            Assert.Equal(_framesBaseline, Space.FramesInUse);
        }

        public void Dispose() => Space.Dispose();
    }
}
