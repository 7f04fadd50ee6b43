using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// Deterministic races of huge PMDs against the fault paths: a fault is stopped at a probe point with what it read of
/// the PMD, a writer splits, unmaps or reprotects, and the fault must notice (a retry, or <c>pmd_same</c> failing under
/// <c>page_table_lock</c>) instead of installing over what changed.
/// </summary>
public sealed class TransparentHugePageRaceTests
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
        SpeculativePageTableAllocation = true,
    });

    private static ulong MapHuge(AddressSpace space)
    {
        ulong a = MapFixed(space, Base, PmdSpan);
        space.Advise(a, PmdSpan, Advice.HugePage);
        return a;
    }

    private static WalkStatus StatusAt(AddressSpace space, ulong address) =>
        space.Descriptor.PageTable.WalkLockless(address, out _, out _);

    private static long AnonHugeKiB(AddressSpace space) =>
        space.GetSmaps().Split('\n').Where(l => l.StartsWith("AnonHugePages:", StringComparison.Ordinal))
            .Sum(l => long.Parse(l["AnonHugePages:".Length..].Trim()[..^3]));

    // Fills the block through a huge fault, then makes its PMD read-only and the block exclusive again: a fork (which
    // write-protects the parent's PMD) whose child is gone.
    private static void FillAndWriteProtect(AddressSpace space, Cpu cpu, ulong a)
    {
        for (int i = 0; i < PagesPerPmd; i++)
        {
            cpu.Store(a + (ulong)i * Page, 1000L + i);
        }
        Assert.Equal(WalkStatus.HugePmd, StatusAt(space, a));
        space.Fork().Dispose();
    }

    [Fact]
    public void SplitVsSpeculativeFault_TheWalkSawTheHugePmd_RetriesAndTheClassicPathWritesThroughTheSplitTable()
    {
        // The speculative walk read a huge PMD (the huge zero page) and stops inside its read section
        // (SpeculativeInWalk). Another Cpu's write finds no free huge block, so it splits the zero PMD and copies one
        // page: no VMA changes and no grace period is waited for (the zero page is never freed), so only the PMD
        // tells. The stopped walk's HugePmd answer sends its fault to the classic path (the SPF series aborts on
        // pmd_trans_huge), which finds the split table's zero-page PTE and copies its own page.
        using AddressSpace space = new(new FaultlineOptions
        {
            FaultPath = FaultPath.Speculative,
            PhysicalMemoryBytes = 64 << 20,
            MapZeroPageOnRead = true,
        });
        ulong a = MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        Assert.Equal(0L, cpu.Load<long>(a));
        Assert.Equal(WalkStatus.HugePmd, StatusAt(space, a));
        var held = new List<long>();
        while (space.Descriptor.Memory.TryAllocateHuge(out long block))
        {
            held.Add(block);
        }
        Dictionary<string, long> before = Counters(space);

        using (var threads = new ThreadScope())
        using (var inWalk = new ProbeGate(space, ProbePoint.SpeculativeInWalk, ThreadRole.Is(Faulter)))
        {
            ThreadRunner<AccessOutcome> fault = threads.Run(Faulter, () => other.TryStore(a + 7 * Page, -7L));
            inWalk.WaitArrived();
            cpu.Store(a + 9 * Page, 9L);
            Assert.Equal(WalkStatus.Ok, StatusAt(space, a));
            inWalk.Release();
            Assert.Equal(AccessOutcome.Ok, fault.Join());
        }

        // Both writers' speculative walks met the huge PMD; the split happened once.
        Assert.Equal(2, Delta(before, space, VmCounters.SpeculativePmdChanged));
        Assert.Equal(1, Delta(before, space, VmCounters.ThpSplitPmd));
        Assert.Equal(1, Delta(before, space, VmCounters.ThpFaultFallback));
        Assert.Equal(2, Delta(before, space, VmCounters.CowFault));
        Assert.Equal(-7L, cpu.Load<long>(a + 7 * Page));
        Assert.Equal(9L, other.Load<long>(a + 9 * Page));
        Assert.Equal(0L, cpu.Load<long>(a + 8 * Page));
        Assert.Equal(2, space.ResidentPages);
        foreach (long block in held)
        {
            space.Descriptor.Memory.FreeHuge(block);
        }
    }

    [Fact]
    public void SpeculativeFaultSawAnEmptyPmd_AHugeFaultInstallsMeanwhile_OneHugePageAndNoPteTable()
    {
        // The speculative walk saw pmd_none in a huge-eligible range; another Cpu's fault maps a huge page there. The
        // stopped fault neither allocates a PTE table over the huge PMD nor maps a second page: it hands over to the
        // classic path, which finds the huge PMD and has nothing left to do.
        using AddressSpace space = NewSpace(FaultPath.Speculative);
        ulong a = MapFixed(space, Base, 2 * PmdSpan);
        space.Advise(a, 2 * PmdSpan, Advice.HugePage);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        // A first fault in the other block gives the VMA its anon_vma, so the speculative path accepts it.
        cpu.Store(a + PmdSpan, 1L);
        Dictionary<string, long> before = Counters(space);
        int tables = space.PageTablePages;

        using var threads = new ThreadScope();
        using var inWalk = new ProbeGate(space, ProbePoint.SpeculativeInWalk, ThreadRole.Is(Faulter));
        ThreadRunner<AccessOutcome> fault = threads.Run(Faulter, () => other.TryStore(a + 3 * Page, 3L));
        inWalk.WaitArrived();
        Assert.Equal(WalkStatus.PmdNone, StatusAt(space, a));

        cpu.Store(a + 5 * Page, 5L);
        Assert.Equal(WalkStatus.HugePmd, StatusAt(space, a));
        inWalk.Release();

        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(1, Delta(before, space, VmCounters.ThpFaultAlloc));
        Assert.Equal(0, Delta(before, space, VmCounters.SpeculativePageFault));
        Assert.Equal(WalkStatus.HugePmd, StatusAt(space, a));
        Assert.Equal(3L, cpu.Load<long>(a + 3 * Page));
        Assert.Equal(5L, other.Load<long>(a + 5 * Page));
        Assert.Equal(2 * PagesPerPmd, space.ResidentPages);
        // The new huge PMD's deposited table is the only table added: none by the stopped fault.
        Assert.Equal(tables + 1, space.PageTablePages);
    }

    [Fact]
    public void WriteToAHugePmdVsSplit_PmdSameFailsUnderTheLock_TheFaultRetriesAtFourKiB()
    {
        // do_huge_pmd_wp_page on the VMA-lock path read orig_pmd (read-only, block exclusive: it would be reused whole)
        // and stops before page_table_lock; MADV_DONTNEED, under the mmap read lock beside the VMA read lock, splits the
        // PMD and zaps a page. Under the lock the PMD is no longer orig_pmd: the fault changes nothing, and the retried
        // access takes the 4 KiB path.
        using AddressSpace space = NewSpace(FaultPath.VmaLock);
        ulong a = MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        FillAndWriteProtect(space, cpu, a);
        Dictionary<string, long> before = Counters(space);

        using var threads = new ThreadScope();
        using var beforeLock = new ProbeGate(space, ProbePoint.HugeWriteProtectBeforePmdLock, ThreadRole.Is(Faulter));
        ThreadRunner<AccessOutcome> fault = threads.Run(Faulter, () => other.TryStore(a + 7 * Page, -7L));
        beforeLock.WaitArrived();
        space.Advise(a + 9 * Page, Page, Advice.DontNeed);
        beforeLock.Release();

        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(1, Delta(before, space, VmCounters.FaultRaceLost));
        Assert.Equal(1, Delta(before, space, VmCounters.CowReuse)); // the 4 KiB page, not the block
        Assert.Equal(WalkStatus.Ok, StatusAt(space, a));
        Assert.Equal(0, AnonHugeKiB(space));
        Assert.Equal(-7L, cpu.Load<long>(a + 7 * Page));
        Assert.Equal(0L, cpu.Load<long>(a + 9 * Page));
        Assert.Equal(1010L, cpu.Load<long>(a + 10 * Page));
        // The zapped page came back as a private zeroed page on the read above (no zero page here).
        Assert.Equal(PagesPerPmd, space.ResidentPages);
    }

    [Fact]
    public void HugeFaultVsMunmapOfPart_VmaLockPath_TheUnmapWaitsThenSplitsAndKeepsTheRest()
    {
        // The huge fault holds the VMA read lock with its block zeroed; munmap of the upper half must write-lock the
        // VMA, so it waits for the fault, then splits the freshly installed PMD at the new boundary and zaps the half.
        using AddressSpace space = NewSpace(FaultPath.VmaLock);
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        Dictionary<string, long> before = Counters(space);

        using var threads = new ThreadScope();
        using var beforeLock = new ProbeGate(space, ProbePoint.HugeFaultBeforePmdLock, ThreadRole.Is(Faulter));
        ThreadRunner<AccessOutcome> fault = threads.Run(Faulter, () => cpu.TryStore(a + Page, 11L));
        beforeLock.WaitArrived();
        long sleeps = mm.WriterWait.Sleeps;
        ThreadRunner<Errno> unmap = threads.Run(Writer, () => space.TryUnmap(a + PmdSpan / 2, PmdSpan / 2));
        ThreadRole.WaitUntil(() => mm.WriterWait.Sleeps > sleeps, "munmap waits for the fault's VMA read lock");
        Assert.False(unmap.IsDone);
        beforeLock.Release();

        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(Errno.None, unmap.Join());
        Assert.Equal(1, Delta(before, space, VmCounters.ThpFaultAlloc));
        Assert.Equal(1, Delta(before, space, VmCounters.ThpSplitPmd));
        Assert.Equal(PagesPerPmd / 2, space.ResidentPages);
        Assert.Equal(0, AnonHugeKiB(space));
        Assert.Equal(11L, cpu.Load<long>(a + Page));
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(a + PmdSpan / 2, out long _));
    }

    [Fact]
    public void HugeFaultVsMprotect_VmaLockPath_TheWholeBlockIsReprotectedAfterTheFaultAndStaysHuge()
    {
        // A read fault (no zero page: it allocates a writable huge page) stops before page_table_lock; mprotect of the
        // whole block to read-only waits for its VMA read lock, then rewrites the installed PMD in place.
        using AddressSpace space = NewSpace(FaultPath.VmaLock);
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        Dictionary<string, long> before = Counters(space);

        using var threads = new ThreadScope();
        using var beforeLock = new ProbeGate(space, ProbePoint.HugeFaultBeforePmdLock, ThreadRole.Is(Faulter));
        ThreadRunner<AccessOutcome> fault = threads.Run(Faulter, () => other.TryLoad(a + Page, out long _));
        beforeLock.WaitArrived();
        long sleeps = mm.WriterWait.Sleeps;
        ThreadRunner<Errno> protect = threads.Run(Writer, () => space.TryProtect(a, PmdSpan, Protection.Read));
        ThreadRole.WaitUntil(() => mm.WriterWait.Sleeps > sleeps, "mprotect waits for the fault's VMA read lock");
        beforeLock.Release();

        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(Errno.None, protect.Join());
        Assert.Equal(WalkStatus.HugePmd, space.Descriptor.PageTable.WalkLockless(a, out _, out ulong pte));
        Assert.Equal(0UL, pte & Pte.Writable);
        Assert.Equal(0, Delta(before, space, VmCounters.ThpSplitPmd));
        Assert.Equal(2048, AnonHugeKiB(space));
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(a + 3 * Page, 1L));
        Assert.Equal(0L, cpu.Load<long>(a + 3 * Page));
    }
}
