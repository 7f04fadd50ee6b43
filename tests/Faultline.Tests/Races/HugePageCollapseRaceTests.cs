using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Paging;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// Deterministic races of huge-page collapse against the fault paths. Collapse clears the PMD over the PTE table,
/// flushes, copies and installs a huge PMD, then frees the table after a grace period: a speculative fault that read the
/// table before must fail its <c>pmd_same(orig_pmd)</c> check and retry, and a VMA-lock fault must keep the collapse out
/// until it is done.
/// </summary>
public sealed class HugePageCollapseRaceTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong PmdSpan = PageGeometry.PmdSize;
    private const int PagesPerPmd = PageGeometry.EntriesPerTable;
    private const ulong Base = 0x4000_0000;
    private const string Faulter = "faulter";
    private const string Writer = "writer";

    private static AddressSpace NewSpace(FaultPath path) => new(new FaultlineOptions
    {
        FaultPath = path,
        MapZeroPageOnRead = false,
        PhysicalMemoryBytes = 64 << 20,
        PoisonFreedFrames = true,
    });

    private static WalkStatus StatusAt(AddressSpace space, ulong address) =>
        space.Descriptor.PageTable.WalkLockless(address, out _, out _);

    // Every page of the block but `hole` written with its index, as 4 KiB pages (no MADV_HUGEPAGE).
    private static ulong MapAndFillAllBut(AddressSpace space, Cpu cpu, int hole)
    {
        ulong a = MapFixed(space, Base, PmdSpan);
        for (int i = 0; i < PagesPerPmd; i++)
        {
            if (i != hole)
            {
                cpu.Store(a + (ulong)i * Page, 1000L + i);
            }
        }
        Assert.Equal(WalkStatus.Ok, StatusAt(space, a));
        return a;
    }

    private static void AssertContents(Cpu cpu, ulong a, int hole, long holeValue)
    {
        for (int i = 0; i < PagesPerPmd; i++)
        {
            Assert.Equal(i == hole ? holeValue : 1000L + i, cpu.Load<long>(a + (ulong)i * Page));
        }
    }

    [Fact]
    public void CollapseVsSpeculativeFault_TheFaultSawThePteTable_RetriesOnPmdSameAndWritesIntoTheHugePage()
    {
        // The speculative fault walked to the PTE table, found the PTE empty, allocated its page and stops before
        // pte_map_lock (SpeculativeBeforePteLock), holding no lock. MADV_COLLAPSE runs to the end: the PMD is cleared and
        // flushed, the 511 pages copied, the huge PMD installed, the table and old pages freed after a grace period. No
        // VMA changed, so only the PMD tells: pte_map_lock's pmd_same(orig_pmd) fails, the fault retries (never touching
        // the freed table or an old page), and the classic path writes through the huge PMD.
        using AddressSpace space = NewSpace(FaultPath.Speculative);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        const int hole = 3;
        ulong a = MapAndFillAllBut(space, cpu, hole);
        Dictionary<string, long> before = Counters(space);

        using (var threads = new ThreadScope())
        using (var beforeLock = new ProbeGate(space, ProbePoint.SpeculativeBeforePteLock, ThreadRole.Is(Faulter)))
        {
            ThreadRunner<AccessOutcome> fault = threads.Run(Faulter, () => other.TryStore(a + hole * Page, -3L));
            beforeLock.WaitArrived();

            Assert.Equal(Errno.None, space.TryAdvise(a, PmdSpan, Advice.Collapse));
            Assert.Equal(WalkStatus.HugePmd, StatusAt(space, a));
            // Collapsed with the hole as zero: the fault has not written anything yet.
            Assert.Equal(0L, cpu.Load<long>(a + hole * Page));

            beforeLock.Release();
            Assert.Equal(AccessOutcome.Ok, fault.Join());
        }

        Assert.Equal(1, Delta(before, space, VmCounters.ThpCollapseAlloc));
        Assert.Equal(1, Delta(before, space, VmCounters.SpeculativePmdChanged));
        Assert.Equal(0, Delta(before, space, VmCounters.SpeculativePageFault));
        Assert.Equal(WalkStatus.HugePmd, StatusAt(space, a));
        AssertContents(cpu, a, hole, -3L);
        Assert.Equal(PagesPerPmd, space.ResidentPages);
    }

    [Fact]
    public void CollapseVsVmaLockFault_TheVmaWriteLockWaitsForTheFault_ThenTheCollapseKeepsItsPage()
    {
        // The VMA-lock fault holds the VMA read lock (VmaLockLocked). The collapse takes the mmap write lock and waits in
        // vma_start_write before it touches the PMD; once the fault has installed its page, the collapse copies it.
        using AddressSpace space = NewSpace(FaultPath.VmaLock);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        const int hole = 9;
        ulong a = MapAndFillAllBut(space, cpu, hole);
        Vma vma = space.Descriptor.Tree.LookupLockless(a)!;
        Dictionary<string, long> before = Counters(space);

        using var threads = new ThreadScope();
        using var probes = new ProbeCounter(space.Descriptor.Probes);
        using var locked = new ProbeGate(space, ProbePoint.VmaLockLocked, ThreadRole.Is(Faulter));
        ThreadRunner<AccessOutcome> fault = threads.Run(Faulter, () => other.TryStore(a + hole * Page, -9L));
        locked.WaitArrived();

        long sleeps = space.Descriptor.WriterWait.Sleeps;
        ThreadRunner<Errno> collapse = threads.Run(Writer, () => space.TryAdvise(a, PmdSpan, Advice.Collapse));
        ThreadRole.WaitUntil(() => space.Descriptor.WriterWait.Sleeps > sleeps, "the collapse waits for the VMA reader");
        Assert.Equal(1, probes[ProbePoint.VmaWriterWaiting]);
        Assert.Equal(0, probes[ProbePoint.CollapseAfterPmdFlush]);
        Assert.Equal(WalkStatus.Ok, StatusAt(space, a));
        Assert.Equal(Vma.LockOffset + 2, vma.RefCount);

        locked.Release();
        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(Errno.None, collapse.Join());

        Assert.Equal(1, probes[ProbePoint.CollapseAfterPmdFlush]);
        Assert.Equal(1, Delta(before, space, VmCounters.ThpCollapseAlloc));
        Assert.Equal(WalkStatus.HugePmd, StatusAt(space, a));
        AssertContents(cpu, a, hole, -9L);
    }
}
