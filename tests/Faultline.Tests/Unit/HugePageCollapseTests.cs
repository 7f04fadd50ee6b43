using Faultline.Areas;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Huge-page collapse: <c>MADV_COLLAPSE</c> and the background <c>khugepaged</c> replace a 2 MiB block's 512 PTEs by one
/// huge PMD over a copy, keep the contents, and refuse what Linux refuses with its errno, changing nothing.
/// </summary>
public class HugePageCollapseTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong PmdSpan = PageGeometry.PmdSize;
    private const int PagesPerPmd = PageGeometry.EntriesPerTable;
    private const ulong Base = 0x4000_0000;

    private static AddressSpace NewSpace(TransparentHugePageMode mode = TransparentHugePageMode.Madvise,
        TimeSpan? period = null) =>
        new(new FaultlineOptions
        {
            FaultPath = FaultPath.VmaLock,
            PhysicalMemoryBytes = 32 << 20,
            MapZeroPageOnRead = false,
            TransparentHugePages = mode,
            PoisonFreedFrames = true,
            HugePageCollapsePeriod = period,
        });

    private static long SmapsField(AddressSpace space, string field) =>
        space.GetSmaps().Split('\n').Where(l => l.StartsWith(field + ":", StringComparison.Ordinal))
            .Sum(l => long.Parse(l[(field.Length + 1)..].Trim()[..^3]));

    private static WalkStatus StatusAt(AddressSpace space, ulong address) =>
        space.Descriptor.PageTable.WalkLockless(address, out _, out _);

    // Writes a distinct value into each of `pages` pages from the start of the block (4 KiB faults: no MADV_HUGEPAGE).
    private static void Fill(Cpu cpu, ulong a, int pages)
    {
        for (int i = 0; i < pages; i++)
        {
            cpu.Store(a + (ulong)i * Page + 8, 1000L + i);
        }
    }

    private static void AssertFilled(Cpu cpu, ulong a, int pages)
    {
        for (int i = 0; i < PagesPerPmd; i++)
        {
            Assert.Equal(i < pages ? 1000L + i : 0L, cpu.Load<long>(a + (ulong)i * Page + 8));
        }
    }

    // khugepaged's collapse of one block with its own limits, under the mmap write lock as the worker takes it.
    private static Errno CollapseWithLimits(AddressSpace space, ulong block, int maxPtesNone, int maxPtesShared)
    {
        MemoryDescriptor mm = space.Descriptor;
        mm.EnterWriteUnlessExiting(space);
        var frames = new FrameCache(mm.Memory);
        try
        {
            Vma vma = mm.Tree.FindFirstEndingAbove(block)!;
            return HugePageCollapse.CollapseBlock(mm, vma, block, frames, maxPtesNone, maxPtesShared);
        }
        finally
        {
            frames.DrainAll();
            mm.MmapLock.ExitWrite();
        }
    }

    [Theory]
    [InlineData(TransparentHugePageMode.Madvise)]
    [InlineData(TransparentHugePageMode.Never)]
    public void MadviseCollapse_AFullyPopulatedBlock_BecomesOneHugePmdWithTheSameContents(TransparentHugePageMode mode)
    {
        // MADV_COLLAPSE ignores the sysfs mode (Linux 6.1: TVA_ENFORCE_SYSFS is not passed), so `never` collapses too.
        using var space = NewSpace(mode);
        ulong a = MapFixed(space, Base, PmdSpan);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, PagesPerPmd);
        Assert.Equal(WalkStatus.Ok, StatusAt(space, a));
        int tables = space.PageTablePages;
        long framesInUse = space.Descriptor.Memory.FramesInUse;
        Dictionary<string, long> before = Counters(space);

        space.Advise(a, PmdSpan, Advice.Collapse);

        Assert.Equal(WalkStatus.HugePmd, StatusAt(space, a));
        AssertFilled(cpu, a, PagesPerPmd);
        Assert.Equal(1, Delta(before, space, VmCounters.ThpCollapseAlloc));
        Assert.Equal(0, Delta(before, space, VmCounters.ThpCollapseAllocFailed));
        Assert.Equal(PagesPerPmd, space.ResidentPages);
        Assert.Equal(2048, SmapsField(space, "AnonHugePages"));
        Assert.Equal(2048, SmapsField(space, "Rss"));
        // The PTE table was freed and a table deposited for a later split: the count is unchanged.
        Assert.Equal(tables, space.PageTablePages);
        // The 512 old frames went back; the block holds 512.
        Assert.Equal(framesInUse, space.Descriptor.Memory.FramesInUse);
        // A write lands in the huge page, and a second MADV_COLLAPSE finds it mapped already.
        cpu.Store(a + 7 * Page, -7L);
        space.Advise(a, PmdSpan, Advice.Collapse);
        Assert.Equal(-7L, cpu.Load<long>(a + 7 * Page));
        Assert.Equal(1, Delta(before, space, VmCounters.ThpCollapseAlloc));
    }

    [Fact]
    public void MadviseCollapse_APartlyPopulatedBlock_CollapsesWithZeroesWhereNothingWasMapped()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, PmdSpan);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 3);

        space.Advise(a, PmdSpan, Advice.Collapse);

        Assert.Equal(WalkStatus.HugePmd, StatusAt(space, a));
        AssertFilled(cpu, a, 3);
        Assert.Equal(PagesPerPmd, space.ResidentPages);
    }

    [Fact]
    public void Khugepaged_MaxPtesNoneIsHonoured_ARefusedBlockIsLeftAsItWas()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, PmdSpan);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, PagesPerPmd - 4);
        Dictionary<string, long> before = Counters(space);

        Assert.Equal(Errno.EBUSY, CollapseWithLimits(space, a, maxPtesNone: 3, HugePageCollapse.DefaultMaxPtesShared));
        Assert.Equal(WalkStatus.Ok, StatusAt(space, a));
        // Read only the filled pages: a read of a hole would fault a page in.
        for (int i = 0; i < PagesPerPmd - 4; i++)
        {
            Assert.Equal(1000L + i, cpu.Load<long>(a + (ulong)i * Page + 8));
        }
        Assert.Equal(PagesPerPmd - 4, space.ResidentPages);
        Assert.Equal(0, Delta(before, space, VmCounters.ThpCollapseAlloc));

        Assert.Equal(Errno.None, CollapseWithLimits(space, a, maxPtesNone: 4, HugePageCollapse.DefaultMaxPtesShared));
        Assert.Equal(WalkStatus.HugePmd, StatusAt(space, a));
        AssertFilled(cpu, a, PagesPerPmd - 4);
    }

    [Fact]
    public void MadviseCollapse_APinnedPage_RefusesWithEagainAndChangesNothing()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, PmdSpan);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, PagesPerPmd);
        using (PinnedPages pinned = space.Pin(a + 5 * Page, Page, write: true))
        {
            Assert.Equal(Errno.EAGAIN, space.TryAdvise(a, PmdSpan, Advice.Collapse));
            Assert.Equal(WalkStatus.Ok, StatusAt(space, a));
            AssertFilled(cpu, a, PagesPerPmd);
        }
        Assert.Equal(Errno.None, space.TryAdvise(a, PmdSpan, Advice.Collapse));
        Assert.Equal(WalkStatus.HugePmd, StatusAt(space, a));
    }

    [Fact]
    public void MadviseCollapse_AfterFork_TheCopyOnWriteBlockIsRefusedWithEinval_UntilAWriteMakesAPageWritable()
    {
        // SCAN_PAGE_RO: every PTE is write-protected after fork, so there is nothing writable to collapse.
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, PmdSpan);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, PagesPerPmd);
        using AddressSpace child = space.Fork();

        Assert.Equal(Errno.EINVAL, space.TryAdvise(a, PmdSpan, Advice.Collapse));
        Assert.Equal(WalkStatus.Ok, StatusAt(space, a));

        // One copied page is writable; the other 511 are shared, which MADV_COLLAPSE allows (max_ptes_shared is
        // khugepaged's), and the child keeps the old pages.
        cpu.Store(a + 8, -1L);
        Assert.Equal(Errno.None, space.TryAdvise(a, PmdSpan, Advice.Collapse));
        Assert.Equal(-1L, cpu.Load<long>(a + 8));
        Assert.Equal(1001L, cpu.Load<long>(a + Page + 8));
        using Cpu childCpu = child.AttachCpu();
        Assert.Equal(1000L, childCpu.Load<long>(a + 8));
        Assert.Equal(1511L, childCpu.Load<long>(a + 511 * Page + 8));
        // The child's PTEs are still write-protected: refused as the parent's were.
        Assert.Equal(Errno.EINVAL, child.TryAdvise(a, PmdSpan, Advice.Collapse));
    }

    [Fact]
    public void Khugepaged_MaxPtesSharedIsHonoured()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, PmdSpan);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, PagesPerPmd);
        using AddressSpace child = space.Fork();
        cpu.Store(a + 8, -1L);

        Assert.Equal(Errno.EINVAL, CollapseWithLimits(space, a, HugePageCollapse.DefaultMaxPtesNone, HugePageCollapse.DefaultMaxPtesShared));
        Assert.Equal(WalkStatus.Ok, StatusAt(space, a));
        Assert.Equal(Errno.None, CollapseWithLimits(space, a, HugePageCollapse.DefaultMaxPtesNone, PagesPerPmd));
        Assert.Equal(-1L, cpu.Load<long>(a + 8));
    }

    [Fact]
    public void MadviseCollapse_MemoryThatMayNotHoldHugePages_Einval_AHole_Enomem()
    {
        using var space = NewSpace(TransparentHugePageMode.Always);
        ulong a = MapFixed(space, Base, PmdSpan);
        space.Advise(a, PmdSpan, Advice.NoHugePage);
        Assert.Equal(Errno.EINVAL, space.TryAdvise(a, PmdSpan, Advice.Collapse));
        ulong shared = space.Map(Base + 4 * PmdSpan, PmdSpan, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);
        Assert.Equal(Errno.EINVAL, space.TryAdvise(shared, PmdSpan, Advice.Collapse));
        Assert.Equal(Errno.ENOMEM, space.TryAdvise(Base + 8 * PmdSpan, PmdSpan, Advice.Collapse));
        // An untouched block has no PTE table (SCAN_PMD_NULL).
        ulong empty = MapFixed(space, Base + 12 * PmdSpan, PmdSpan);
        Assert.Equal(Errno.EINVAL, space.TryAdvise(empty, PmdSpan, Advice.Collapse));
        Assert.Equal(0, space.ResidentPages);
    }

    [Fact]
    public void Khugepaged_CollapsesAnEligibleBlockInTheBackground_AndStopsWithTheAddressSpace()
    {
        var space = NewSpace(period: TimeSpan.FromMilliseconds(5));
        ulong a = MapFixed(space, Base, PmdSpan);
        using (Cpu cpu = space.AttachCpu())
        {
            // Filled as 4 KiB pages, then advised: only khugepaged can make it huge now.
            Fill(cpu, a, 10);
            Assert.Equal(WalkStatus.Ok, StatusAt(space, a));
            space.Advise(a, PmdSpan, Advice.HugePage);
            Assert.True(SpinWait.SpinUntil(() => StatusAt(space, a) == WalkStatus.HugePmd, TimeSpan.FromSeconds(30)));
            AssertFilled(cpu, a, 10);
            Assert.True(space.HugePageCollapseScans > 0);
            Assert.Equal(1, space.GetCounters()[VmCounters.ThpCollapseAlloc]);
        }
        // Dispose stops and joins the worker before the address space is torn down.
        space.Dispose();
        Assert.Throws<ObjectDisposedException>(() => space.HugePageCollapseScans);
    }

    [Fact]
    public void WithoutTheOption_NoBackgroundCollapseRuns()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, PmdSpan);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 10);
        space.Advise(a, PmdSpan, Advice.HugePage);
        Thread.Sleep(50);
        Assert.Equal(0, space.HugePageCollapseScans);
        Assert.Equal(WalkStatus.Ok, StatusAt(space, a));
    }
}
