using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// fork with copy-on-write on each fault path: the child sees the parent's memory, each side's later writes stay its
/// own, shared frames are counted as smaps counts them, the reverse map finds every mapping, and frames go back when
/// the last mapping goes, whichever side is disposed first.
/// </summary>
public sealed class ForkTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;
    private const int Pages = 16;

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    private static AddressSpace NewSpace(FaultPath path, bool zeroPage = false) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 32 << 20, MapZeroPageOnRead = zeroPage });

    private static void Fill(Cpu cpu, ulong start, int pages, long salt)
    {
        for (int i = 0; i < pages; i++)
        {
            cpu.Store(start + (ulong)i * Page, salt + i);
        }
    }

    private static void AssertFilled(Cpu cpu, ulong start, int pages, long salt)
    {
        for (int i = 0; i < pages; i++)
        {
            Assert.Equal(salt + i, cpu.Load<long>(start + (ulong)i * Page));
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void EachSidesWritesAfterForkStayItsOwn(FaultPath path)
    {
        using var parent = NewSpace(path);
        ulong a = MapFixed(parent, Base, Pages * Page);
        using Cpu parentCpu = parent.AttachCpu();
        using Cpu parentIdle = parent.AttachCpu();
        Fill(parentCpu, a, Pages, 100);

        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();
        using Cpu childIdle = child.AttachCpu();
        Assert.Equal(parent.GetMaps(), child.GetMaps());
        AssertFilled(childCpu, a, Pages, 100);

        Dictionary<string, long> childBefore = Counters(child);
        Fill(childCpu, a, Pages / 2, 200);
        Assert.Equal(Pages / 2, Delta(childBefore, child, "cow_fault"));
        Dictionary<string, long> parentBefore = Counters(parent);
        Fill(parentCpu, a, Pages, 300);

        AssertFilled(childCpu, a, Pages / 2, 200);
        for (int i = Pages / 2; i < Pages; i++)
        {
            Assert.Equal(100 + i, childCpu.Load<long>(a + (ulong)i * Page));
        }
        AssertFilled(parentCpu, a, Pages, 300);
        // The pages the child copied are the parent's alone again (reused); the others are still shared (copied).
        Assert.Equal(Pages / 2, Delta(parentBefore, parent, "cow_reuse"));
        Assert.Equal(Pages / 2, Delta(parentBefore, parent, "cow_fault"));
        Assert.Equal(Pages, parent.ResidentPages);
        Assert.Equal(Pages, child.ResidentPages);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void ForkTakesWritableTranslationsFromTheParentsTlb(FaultPath path)
    {
        using var parent = NewSpace(path);
        ulong a = MapFixed(parent, Base, Page);
        using Cpu parentCpu = parent.AttachCpu();
        parentCpu.Store(a, 1L);
        parentCpu.Store(a, 2L);

        using AddressSpace child = parent.Fork();
        Dictionary<string, long> before = Counters(parent);
        // The TLB held a writable entry: without the fork's flush this store would land in the shared frame.
        parentCpu.Store(a, 3L);

        using Cpu childCpu = child.AttachCpu();
        Assert.Equal(2L, childCpu.Load<long>(a));
        Assert.Equal(3L, parentCpu.Load<long>(a));
        Assert.Equal(1, Delta(before, parent, "cow_fault"));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void SmapsCountsSharedPagesProportionallyUntilEachSideCopies(FaultPath path)
    {
        using var parent = NewSpace(path);
        ulong a = MapFixed(parent, Base, Pages * Page);
        using Cpu parentCpu = parent.AttachCpu();
        Fill(parentCpu, a, Pages, 0);

        using AddressSpace child = parent.Fork();
        foreach (AddressSpace side in new[] { parent, child })
        {
            Dictionary<string, long> smaps = SmapsOf(side);
            Assert.Equal(Pages * 4, smaps["Rss"]);
            Assert.Equal(Pages * 4, smaps["Shared_Dirty"]);
            Assert.Equal(0, smaps["Private_Dirty"]);
            Assert.Equal(Pages * 2, smaps["Pss"]);
        }

        using Cpu childCpu = child.AttachCpu();
        Fill(childCpu, a, Pages, 50);
        foreach (AddressSpace side in new[] { parent, child })
        {
            Dictionary<string, long> smaps = SmapsOf(side);
            Assert.Equal(0, smaps["Shared_Dirty"]);
            Assert.Equal(Pages * 4, smaps["Private_Dirty"]);
            Assert.Equal(Pages * 4, smaps["Pss"]);
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void ReverseMapFindsEveryMappingOfASharedPageAcrossAForkChain(FaultPath path)
    {
        using var parent = NewSpace(path);
        ulong a = MapFixed(parent, Base, 2 * Page);
        using Cpu parentCpu = parent.AttachCpu();
        parentCpu.Store(a, 7L);
        parentCpu.Store(a + Page, 8L);

        using AddressSpace child = parent.Fork();
        using AddressSpace grandchild = child.Fork();
        Assert.Equal([new PageMapping(parent, a), new PageMapping(child, a), new PageMapping(grandchild, a)], parent.GetPageMappings(a));

        using Cpu childCpu = child.AttachCpu();
        childCpu.Store(a, 9L);
        Assert.Equal([new PageMapping(child, a)], child.GetPageMappings(a));
        Assert.Equal([new PageMapping(parent, a), new PageMapping(grandchild, a)], grandchild.GetPageMappings(a));
        Assert.Equal(3, parent.GetPageMappings(a + Page).Count);

        using Cpu grandchildCpu = grandchild.AttachCpu();
        Assert.Equal(7L, grandchildCpu.Load<long>(a));
        Assert.Equal(8L, grandchildCpu.Load<long>(a + Page));
        Assert.Equal(9L, childCpu.Load<long>(a));
        Assert.Empty(parent.GetPageMappings(a + 2 * Page));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void DisposingEitherSideFirstLeavesTheOthersMemoryAndReturnsSharedFrames(bool parentFirst)
    {
        var parent = NewSpace(FaultPath.Speculative);
        ulong a = MapFixed(parent, Base, Pages * Page);
        using (Cpu cpu = parent.AttachCpu())
        {
            Fill(cpu, a, Pages, 10);
        }
        int framesBeforeFork = parent.FramesInUse;
        var child = parent.Fork();
        using (Cpu cpu = child.AttachCpu())
        {
            Fill(cpu, a, 4, 20);
        }
        Assert.Equal(framesBeforeFork + 4 + child.PageTablePages, parent.FramesInUse);

        AddressSpace first = parentFirst ? parent : child, second = parentFirst ? child : parent;
        first.Dispose();
        using (Cpu cpu = second.AttachCpu())
        {
            if (parentFirst)
            {
                AssertFilled(cpu, a, 4, 20);
            }
            else
            {
                AssertFilled(cpu, a, Pages, 10);
            }
            for (int i = 4; i < Pages; i++)
            {
                Assert.Equal(10 + i, cpu.Load<long>(a + (ulong)i * Page));
            }
            // Every frame the gone side mapped alone was freed; the ones it shared belong to the survivor only.
            Assert.Equal(Pages + second.PageTablePages, second.FramesInUse);
            Fill(cpu, a, Pages, 30);
            Assert.Equal(Pages, second.GetCounters()["cow_reuse"] + (parentFirst ? 4 : 0));
        }
        second.Dispose();
    }

    [Fact]
    public void TheZeroPageStaysSharedAcrossFork()
    {
        using var parent = NewSpace(FaultPath.MmapLock, zeroPage: true);
        ulong a = MapFixed(parent, Base, Pages * Page);
        using Cpu cpu = parent.AttachCpu();
        for (int i = 0; i < Pages; i++)
        {
            Assert.Equal(0L, cpu.Load<long>(a + (ulong)i * Page));
        }
        cpu.Store(a, 1L);

        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();
        Assert.Equal(1, child.CountResidentPages(a, a + Pages * Page));
        Assert.True(child.IsResident(a + Page));
        Assert.Equal(0L, childCpu.Load<long>(a + Page));
        childCpu.Store(a + Page, 5L);
        Assert.Equal(0L, cpu.Load<long>(a + Page));
        Assert.Equal(2, child.CountResidentPages(a, a + Pages * Page));
    }

    [Fact]
    public void ReadOnlyPagesMadeWritableAfterForkAreCopiedNotShared()
    {
        using var parent = NewSpace(FaultPath.VmaLock);
        ulong a = MapFixed(parent, Base, Page);
        using Cpu cpu = parent.AttachCpu();
        cpu.Store(a, 4L);
        parent.Protect(a, Page, Protection.Read);

        using AddressSpace child = parent.Fork();
        parent.Protect(a, Page, Protection.ReadWrite);
        child.Protect(a, Page, Protection.ReadWrite);
        using Cpu childCpu = child.AttachCpu();
        childCpu.Store(a, 5L);
        cpu.Store(a, 6L);

        Assert.Equal(5L, childCpu.Load<long>(a));
        Assert.Equal(6L, cpu.Load<long>(a));
    }

    [Fact]
    public void ForkOfADisposedSpaceThrowsAndLeavesNoChild()
    {
        var parent = NewSpace(FaultPath.MmapLock);
        MapFixed(parent, Base, Page);
        parent.Dispose();

        Assert.Throws<ObjectDisposedException>(() => parent.Fork());
    }

    [Fact]
    public void ForkFailsWithEnomemWhenTablesRunOutAndReleasesThePartialChild()
    {
        // Four mappings 1 GiB apart need four page-table chains each; guest RAM holds the pages and little more.
        using var parent = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 64 * (long)Page });
        using Cpu cpu = parent.AttachCpu();
        int mapped = 0;
        for (ulong gib = 1; gib <= 12 && parent.FramesInUse < 60; gib++)
        {
            ulong at = MapFixed(parent, gib << 30, Page);
            cpu.Store(at, (long)gib);
            mapped++;
        }
        int framesInUse = parent.FramesInUse;

        var error = Assert.Throws<MemoryOperationException>(() => parent.Fork());

        Assert.Equal(Errno.ENOMEM, error.Error);
        Assert.Equal(framesInUse, parent.FramesInUse);
        for (ulong gib = 1; gib <= (ulong)mapped; gib++)
        {
            cpu.Store(gib << 30, 0L);
        }
    }

    [Fact]
    public void AHugePmdIsSharedReadOnlyWithTheChildAndItsFrameCountedTwice()
    {
        const ulong PmdSpan = PageGeometry.PmdSize;
        using var parent = NewSpace(FaultPath.MmapLock);
        ulong a = MapFixed(parent, Base, 2 * PmdSpan);
        parent.Advise(a + PmdSpan, PmdSpan, Advice.HugePage);
        using Cpu cpu = parent.AttachCpu();
        cpu.Store(a, 1L);
        cpu.Store(a + PmdSpan, 2L);
        MemoryDescriptor mm = parent.Descriptor;
        Assert.Equal(WalkStatus.HugePmd, mm.PageTable.WalkLockless(a + PmdSpan, out _, out ulong subpage));
        long pfn = Pte.Frame(subpage);
        using AddressSpace child = parent.Fork();

        Assert.Equal(2, mm.Memory.Info(pfn).RefCount);
        Assert.Equal(2, mm.Memory.Info(pfn).MapCount);
        Assert.False(mm.Memory.HasFlags(pfn, FrameFlags.AnonExclusive));
        foreach (AddressSpace side in new[] { parent, child })
        {
            var visitor = new HugeEntryProbe(side.Descriptor.PageTable);
            side.Descriptor.PageTable.Walker.Walk(a + PmdSpan, a + 2 * PmdSpan, ref visitor);
            Assert.Equal(pfn, Pte.Frame(visitor.Entry));
            Assert.Equal(0UL, visitor.Entry & Pte.Writable);
            Assert.Equal(PageGeometry.EntriesPerTable + 1, side.CountResidentPages(a, a + 2 * PmdSpan));
            Assert.Equal((long)(PageGeometry.EntriesPerTable + 1) * 4, SmapsOf(side)["Rss"]);
        }
    }

    // Reads the one huge PMD a walk visits.
    private unsafe struct HugeEntryProbe(PageTable table) : IPageRangeVisitor
    {
        public ulong Entry;

        public void VisitPteTable(long pteTable, int firstIndex, int endIndex, ulong tableBase)
        {
        }

        public void VisitHugePmd(long pmdTable, int pmdIndex, ulong address) => Entry = table.Entries(pmdTable)[pmdIndex];
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void DontForkLeavesAMappingOutAndWipeOnForkGivesTheChildZeroes(FaultPath path)
    {
        using var parent = NewSpace(path);
        ulong kept = MapFixed(parent, Base, 4 * Page);
        ulong left = MapFixed(parent, Base + 8 * Page, 4 * Page);
        ulong wiped = MapFixed(parent, Base + 16 * Page, 4 * Page);
        using Cpu cpu = parent.AttachCpu();
        Fill(cpu, kept, 4, 1);
        Fill(cpu, left, 4, 10);
        Fill(cpu, wiped, 4, 20);
        parent.Advise(left, 4 * Page, Advice.DontFork);
        parent.Advise(wiped, 4 * Page, Advice.WipeOnFork);

        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();

        Assert.Equal([kept, wiped], child.GetMappings().Select(m => m.Start));
        AssertFilled(childCpu, kept, 4, 1);
        Assert.Equal(AccessOutcome.SegvMapErr, childCpu.TryLoad(left, out long _));
        Assert.Equal(0, child.CountResidentPages(wiped, wiped + 4 * Page));
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(0L, childCpu.Load<long>(wiped + (ulong)i * Page));
        }
        AssertFilled(cpu, left, 4, 10);
        AssertFilled(cpu, wiped, 4, 20);
        // The wiped VMA keeps its advice in the child, as Linux's does (smaps "wf").
        Assert.Contains(" wf ", child.GetSmaps());
    }

    [Fact]
    public void TheChildKeepsTheBreakButNoLockedMemory()
    {
        using var parent = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 32 << 20, CapIpcLock = true });
        ulong start = parent.Brk(0);
        ulong grown = parent.Brk(start + 8 * Page);
        Assert.Equal(start + 8 * Page, grown);
        ulong a = MapFixed(parent, Base, 4 * Page);
        Assert.Equal(Errno.None, parent.Lock(a, 4 * Page));

        using AddressSpace child = parent.Fork();

        Assert.Equal(grown, child.Brk(0));
        Assert.Contains("[heap]", child.GetMaps());
        Assert.DoesNotContain(" lo ", child.GetSmaps());
        Assert.Contains(" lo ", parent.GetSmaps());
    }

    private static Dictionary<string, long> SmapsOf(AddressSpace space)
    {
        var fields = new Dictionary<string, long>();
        foreach (string line in space.GetSmaps().Split('\n'))
        {
            string[] parts = line.Split(':', 2);
            if (parts.Length == 2 && parts[1].Trim().EndsWith(" kB"))
            {
                fields[parts[0]] = fields.GetValueOrDefault(parts[0]) + long.Parse(parts[1].Trim()[..^3]);
            }
        }
        return fields;
    }
}
