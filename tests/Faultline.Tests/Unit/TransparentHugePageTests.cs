using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Transparent huge pages: the huge anonymous fault on each path, the huge zero page, the fallback to 4 KiB pages, and
/// every operation on a huge PMD (split where it covers part, whole otherwise), with the counters and smaps fields.
/// </summary>
public class TransparentHugePageTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong PmdSpan = PageGeometry.PmdSize;
    private const int PagesPerPmd = PageGeometry.EntriesPerTable;
    private const ulong Base = 0x4000_0000;

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    private static AddressSpace NewSpace(FaultPath path = FaultPath.VmaLock, bool zeroPage = false,
        TransparentHugePageMode mode = TransparentHugePageMode.Madvise, long memory = 32 << 20) =>
        new(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = memory,
            MapZeroPageOnRead = zeroPage,
            TransparentHugePages = mode,
        });

    // A MADV_HUGEPAGE mapping of `blocks` aligned 2 MiB blocks at Base.
    private static ulong MapHuge(AddressSpace space, int blocks = 1)
    {
        ulong a = MapFixed(space, Base, (ulong)blocks * PmdSpan);
        space.Advise(a, (ulong)blocks * PmdSpan, Advice.HugePage);
        return a;
    }

    private static long SmapsField(AddressSpace space, string field) =>
        space.GetSmaps().Split('\n').Where(l => l.StartsWith(field + ":", StringComparison.Ordinal))
            .Sum(l => long.Parse(l[(field.Length + 1)..].Trim()[..^3]));

    private static bool IsHugeAt(AddressSpace space, ulong address) =>
        space.Descriptor.PageTable.WalkLockless(address, out _, out _) == WalkStatus.HugePmd;

    private static long HeadAt(AddressSpace space, ulong address)
    {
        Assert.Equal(WalkStatus.HugePmd, space.Descriptor.PageTable.WalkLockless(address, out _, out ulong pte));
        return Pte.Frame(pte) - (long)((address & (PmdSpan - 1)) / Page);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AWriteFaultInAnAdvisedAlignedRangeMapsOneZeroedHugePage(FaultPath path)
    {
        using var space = NewSpace(path);
        ulong a = MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        Dictionary<string, long> before = Counters(space);

        cpu.Store(a + 3 * Page + 8, 0x1234L);

        Assert.True(IsHugeAt(space, a));
        Assert.Equal(1, Delta(before, space, VmCounters.ThpFaultAlloc));
        Assert.Equal(0, Delta(before, space, VmCounters.ThpFaultFallback));
        Assert.Equal(PagesPerPmd, space.ResidentPages);
        Assert.Equal(2048, SmapsField(space, "AnonHugePages"));
        Assert.Equal(2048, SmapsField(space, "Rss"));
        // Every other byte of the block reads zero, through the TLB's 4 KiB fills of the huge PMD, on both Cpus.
        foreach (Cpu reader in new[] { cpu, other })
        {
            Assert.Equal(0x1234L, reader.Load<long>(a + 3 * Page + 8));
            for (ulong offset = 0; offset < PmdSpan; offset += 509 * 8)
            {
                if (offset != 3 * Page + 8)
                {
                    Assert.Equal(0L, reader.Load<long>(a + offset));
                }
            }
        }
        // One fault for the whole block: every page is reached without another.
        Dictionary<string, long> touched = Counters(space);
        for (int i = 0; i < PagesPerPmd; i++)
        {
            cpu.Store(a + (ulong)i * Page, (long)i);
        }
        Assert.Equal(0, Delta(touched, space, VmCounters.PageFault));
        Assert.True(space.Descriptor.Memory.IsHugeHead(HeadAt(space, a)));
    }

    [Fact]
    public void IneligibleMappingsGet4KiBPages()
    {
        using var never = NewSpace(mode: TransparentHugePageMode.Never);
        using var unadvised = NewSpace(mode: TransparentHugePageMode.Madvise);
        using var always = NewSpace(mode: TransparentHugePageMode.Always);
        ulong n = MapHuge(never);
        ulong u = MapFixed(unadvised, Base, PmdSpan);
        // Under "always", a mapping one page short of a whole aligned block has no block to map.
        ulong s = MapFixed(always, Base, PmdSpan - Page);
        foreach ((AddressSpace space, ulong address) in new[] { (never, n), (unadvised, u), (always, s) })
        {
            using Cpu cpu = space.AttachCpu();
            cpu.Store(address, 1L);
            Assert.False(IsHugeAt(space, address));
            Assert.Equal(1, space.ResidentPages);
            Assert.Equal(0, SmapsField(space, "AnonHugePages"));
        }
        using var alwaysWhole = NewSpace(mode: TransparentHugePageMode.Always);
        ulong w = MapFixed(alwaysWhole, Base, PmdSpan);
        using (Cpu cpu = alwaysWhole.AttachCpu())
        {
            cpu.Store(w, 1L);
        }
        Assert.True(IsHugeAt(alwaysWhole, w));
        // MADV_NOHUGEPAGE wins over "always".
        using var refused = NewSpace(mode: TransparentHugePageMode.Always);
        ulong r = MapFixed(refused, Base, PmdSpan);
        refused.Advise(r, PmdSpan, Advice.NoHugePage);
        using (Cpu cpu = refused.AttachCpu())
        {
            cpu.Store(r, 1L);
        }
        Assert.False(IsHugeAt(refused, r));
    }

    [Fact]
    public void WithNoFreeHugeBlockTheFaultFallsBackTo4KiBPages()
    {
        using var space = NewSpace();
        ulong a = MapHuge(space);
        PhysicalMemory memory = space.Descriptor.Memory;
        var held = new List<long>();
        while (memory.TryAllocateHuge(out long block))
        {
            held.Add(block);
        }
        Dictionary<string, long> before = Counters(space);
        using (Cpu cpu = space.AttachCpu())
        {
            cpu.Store(a + Page, 5L);
            Assert.Equal(5L, cpu.Load<long>(a + Page));
        }
        Assert.False(IsHugeAt(space, a));
        Assert.Equal(1, Delta(before, space, VmCounters.ThpFaultFallback));
        Assert.Equal(0, Delta(before, space, VmCounters.ThpFaultAlloc));
        Assert.Equal(1, space.ResidentPages);
        foreach (long block in held)
        {
            memory.FreeHuge(block);
        }
    }

    [Fact]
    public void AReadMapsTheHugeZeroPageAndAWriteReplacesItWithAHugePage()
    {
        using var space = NewSpace(zeroPage: true);
        ulong a = MapHuge(space, blocks: 2);
        using Cpu cpu = space.AttachCpu();
        Dictionary<string, long> before = Counters(space);

        Assert.Equal(0L, cpu.Load<long>(a + 7 * Page));
        Assert.Equal(0L, cpu.Load<long>(a + PmdSpan));
        Assert.True(IsHugeAt(space, a));
        Assert.Equal(1, Delta(before, space, VmCounters.ThpZeroPageAlloc));
        Assert.Equal(0, space.ResidentPages);
        Assert.Equal(0, SmapsField(space, "AnonHugePages"));
        Assert.True(space.IsResident(a + 9 * Page));

        cpu.Store(a + 7 * Page, 3L);
        Assert.True(IsHugeAt(space, a));
        Assert.Equal(1, Delta(before, space, VmCounters.ThpFaultAlloc));
        Assert.Equal(3L, cpu.Load<long>(a + 7 * Page));
        Assert.Equal(0L, cpu.Load<long>(a + 8 * Page));
        Assert.Equal(PagesPerPmd, space.ResidentPages);
        Assert.Equal(2048, SmapsField(space, "AnonHugePages"));
        // The other block still maps the zero page.
        Assert.Equal(0L, cpu.Load<long>(a + PmdSpan + 5 * Page));
        Assert.Equal(PagesPerPmd, space.ResidentPages);
    }

    [Fact]
    public void AWriteToTheHugeZeroPageWithNoFreeBlockSplitsItAndCopiesOnePage()
    {
        using var space = NewSpace(zeroPage: true);
        ulong a = MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        Assert.Equal(0L, cpu.Load<long>(a));
        PhysicalMemory memory = space.Descriptor.Memory;
        var held = new List<long>();
        while (memory.TryAllocateHuge(out long block))
        {
            held.Add(block);
        }
        Dictionary<string, long> before = Counters(space);
        cpu.Store(a + 2 * Page, 4L);
        Assert.False(IsHugeAt(space, a));
        Assert.Equal(1, Delta(before, space, VmCounters.ThpSplitPmd));
        Assert.Equal(1, space.ResidentPages);
        Assert.Equal(4L, cpu.Load<long>(a + 2 * Page));
        Assert.Equal(0L, cpu.Load<long>(a + 3 * Page));
        Assert.True(space.IsResident(a + 3 * Page));
        foreach (long block in held)
        {
            memory.FreeHuge(block);
        }
    }

    [Fact]
    public void UnmappingPartSplitsTheRestStaysAndTheBlockIsFreedWithItsLastPage()
    {
        using var space = NewSpace();
        ulong a = MapHuge(space);
        PhysicalMemory memory = space.Descriptor.Memory;
        using Cpu cpu = space.AttachCpu();
        for (int i = 0; i < PagesPerPmd; i++)
        {
            cpu.Store(a + (ulong)i * Page, 100L + i);
        }
        long head = HeadAt(space, a);
        Dictionary<string, long> before = Counters(space);

        space.Unmap(a + PmdSpan / 2, PmdSpan / 2);

        Assert.False(IsHugeAt(space, a));
        Assert.Equal(1, Delta(before, space, VmCounters.ThpSplitPmd));
        Assert.Equal(PagesPerPmd / 2, space.ResidentPages);
        Assert.Equal(0, SmapsField(space, "AnonHugePages"));
        Assert.Equal(1024, SmapsField(space, "Rss"));
        for (int i = 0; i < PagesPerPmd / 2; i++)
        {
            Assert.Equal(100L + i, cpu.Load<long>(a + (ulong)i * Page));
        }
        // The block stays whole while any of its pages is mapped (one reference a PTE, on the head) ...
        Assert.Equal(PagesPerPmd / 2, memory.Info(head).RefCount);
        Assert.True(memory.IsHugeHead(head));
        space.Unmap(a, PmdSpan / 2);
        // ... and returns to the huge pool whole with the last.
        Assert.Equal(FrameKind.Free, memory.Info(head).Kind);
        Assert.True(memory.TryAllocateHuge(out long again));
        memory.FreeHuge(again);
    }

    [Fact]
    public void DontNeedAndFreeOfPartSplitAndOfAWholeBlockKeepOrDropIt()
    {
        using var space = NewSpace();
        ulong a = MapHuge(space, blocks: 2);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a + Page, 1L);
        cpu.Store(a + 2 * Page, 2L);
        cpu.Store(a + PmdSpan, 3L);
        Dictionary<string, long> before = Counters(space);

        space.Advise(a + Page, Page, Advice.DontNeed);
        Assert.False(IsHugeAt(space, a));
        Assert.Equal(1, Delta(before, space, VmCounters.ThpSplitPmd));
        Assert.Equal(0L, cpu.Load<long>(a + Page));
        Assert.Equal(2L, cpu.Load<long>(a + 2 * Page));
        Assert.Equal(2 * PagesPerPmd - 1 + 1, space.ResidentPages);

        space.Advise(a + PmdSpan, PmdSpan, Advice.Free);
        Assert.True(IsHugeAt(space, a + PmdSpan));
        Assert.Equal(2048, SmapsField(space, "LazyFree"));
        space.Advise(a + PmdSpan, PmdSpan, Advice.DontNeed);
        Assert.False(space.IsResident(a + PmdSpan));
        Assert.Equal(1, Delta(before, space, VmCounters.ThpSplitPmd));
        Assert.Equal(0L, cpu.Load<long>(a + PmdSpan));
    }

    [Fact]
    public void ProtectingAWholeBlockKeepsItHugeAndPartSplitsIt()
    {
        using var space = NewSpace();
        ulong a = MapHuge(space, blocks: 2);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1L);
        cpu.Store(a + PmdSpan, 2L);
        Dictionary<string, long> before = Counters(space);

        space.Protect(a, PmdSpan, Protection.Read);
        Assert.True(IsHugeAt(space, a));
        Assert.Throws<SegmentationFaultException>(() => cpu.Store(a + 5 * Page, 1L));
        Assert.Equal(1L, cpu.Load<long>(a));
        space.Protect(a, PmdSpan, Protection.ReadWrite);
        cpu.Store(a + 5 * Page, 6L);
        Assert.True(IsHugeAt(space, a));

        space.Protect(a + PmdSpan + Page, Page, Protection.Read);
        Assert.False(IsHugeAt(space, a + PmdSpan));
        Assert.Equal(1, Delta(before, space, VmCounters.ThpSplitPmd));
        Assert.Throws<SegmentationFaultException>(() => cpu.Store(a + PmdSpan + Page, 1L));
        cpu.Store(a + PmdSpan + 2 * Page, 7L);
        Assert.Equal(2L, cpu.Load<long>(a + PmdSpan));
        Assert.Equal(2 * PagesPerPmd, space.ResidentPages);
    }

    [Fact]
    public void LockingPartSplitsAtTheNewVmaBoundary()
    {
        using var space = new AddressSpace(new FaultlineOptions
        {
            PhysicalMemoryBytes = 32 << 20,
            MemoryLockLimit = 4 << 20,
        });
        ulong a = MapHuge(space);
        using (Cpu cpu = space.AttachCpu())
        {
            cpu.Store(a, 1L);
        }
        Assert.Equal(Errno.None, space.Lock(a, 16 * Page));
        Assert.False(IsHugeAt(space, a));
        Assert.Equal(PagesPerPmd, space.ResidentPages);
        Assert.Equal(0, SmapsField(space, "AnonHugePages"));
    }

    [Fact]
    public void ForkSharesTheBlockAndAWriteSplitsAndCopiesOnePageUnlessTheWriterIsAlone()
    {
        using var parent = NewSpace();
        ulong a = MapHuge(parent);
        using Cpu cpu = parent.AttachCpu();
        for (int i = 0; i < PagesPerPmd; i++)
        {
            cpu.Store(a + (ulong)i * Page, 10L + i);
        }
        PhysicalMemory memory = parent.Descriptor.Memory;
        long head = HeadAt(parent, a);
        using (AddressSpace child = parent.Fork())
        {
            Assert.Equal(2, memory.Info(head).RefCount);
            Assert.Equal(2, memory.Info(head + 77).MapCount);
            Assert.True(IsHugeAt(child, a));
            Assert.Equal(2048, SmapsField(child, "AnonHugePages"));
            Dictionary<string, long> before = Counters(child);
            using (Cpu childCpu = child.AttachCpu())
            {
                childCpu.Store(a + 4 * Page, -1L);
                Assert.Equal(-1L, childCpu.Load<long>(a + 4 * Page));
                Assert.Equal(15L, childCpu.Load<long>(a + 5 * Page));
            }
            Assert.Equal(1, Delta(before, child, VmCounters.ThpSplitPmd));
            Assert.Equal(1, Delta(before, child, VmCounters.CowFault));
            Assert.False(IsHugeAt(child, a));
            Assert.True(IsHugeAt(parent, a));
            Assert.Equal(14L, cpu.Load<long>(a + 4 * Page));
            // The child's 511 PTEs and the parent's PMD hold the block.
            Assert.Equal(PagesPerPmd, memory.Info(head).RefCount);
        }
        // The child is gone: the parent's write reuses the whole block in place.
        Dictionary<string, long> reuse = Counters(parent);
        cpu.Store(a + 4 * Page, -2L);
        Assert.True(IsHugeAt(parent, a));
        Assert.Equal(1, Delta(reuse, parent, VmCounters.CowReuse));
        Assert.Equal(head, HeadAt(parent, a));
        Assert.Equal(1, memory.Info(head).RefCount);
    }

    [Fact]
    public void RemapMovesAnAlignedBlockWholeAndSplitsAnUnalignedOne()
    {
        using var space = NewSpace();
        ulong a = MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a + 3 * Page, 33L);
        ulong aligned = space.Remap(a, PmdSpan, PmdSpan, RemapFlags.MayMove | RemapFlags.Fixed, Base + 4 * PmdSpan);
        Assert.True(IsHugeAt(space, aligned));
        Assert.Equal(33L, cpu.Load<long>(aligned + 3 * Page));
        ulong unaligned = space.Remap(aligned, PmdSpan, PmdSpan, RemapFlags.MayMove | RemapFlags.Fixed, Base + 8 * PmdSpan + Page);
        Assert.False(IsHugeAt(space, unaligned));
        Assert.Equal(33L, cpu.Load<long>(unaligned + 3 * Page));
        Assert.Equal(PagesPerPmd, space.ResidentPages);
        Assert.Equal(0, SmapsField(space, "AnonHugePages"));
    }

    [Fact]
    public void MincorePageMapAndPinSeeEachPageOfAHugePmd()
    {
        using var space = NewSpace();
        ulong a = MapHuge(space);
        using (Cpu cpu = space.AttachCpu())
        {
            cpu.Store(a + 9 * Page, 99L);
        }
        long head = HeadAt(space, a);
        var residency = new byte[4];
        Assert.Equal(Errno.None, space.Mincore(a + 8 * Page, 4 * Page, residency));
        Assert.All(residency, r => Assert.Equal(1, r & 1));
        var entries = new ulong[3];
        Assert.Equal(Errno.None, space.ReadPageMap(a + 10 * Page, entries, showFrameNumbers: true));
        for (int i = 0; i < entries.Length; i++)
        {
            Assert.Equal(PageMapVisitor.Present, entries[i] & PageMapVisitor.Present);
            Assert.Equal((ulong)(head + 10 + i), entries[i] & PageMapVisitor.FrameMask);
        }
        Assert.Equal(16 * 4, space.CountResidentPages(a, a + 16 * Page) * 4);
        using (PinnedPages pinned = space.Pin(a + 9 * Page, Page, write: true))
        {
            Assert.Equal(2, space.Descriptor.Memory.Info(head).RefCount);
            Assert.Equal(1, space.Descriptor.Memory.Info(head + 9).PinCount);
            Assert.True(IsHugeAt(space, a));
        }
        Assert.Equal(1, space.Descriptor.Memory.Info(head).RefCount);
    }

    [Fact]
    public void ForkOfABlockWithAPinnedPageSplitsItAndCopiesThePinnedPageForTheChild()
    {
        using var parent = NewSpace();
        ulong a = MapHuge(parent);
        using Cpu cpu = parent.AttachCpu();
        cpu.Store(a + 2 * Page, 22L);
        cpu.Store(a + 3 * Page, 33L);
        long head = HeadAt(parent, a);
        using PinnedPages pinned = parent.Pin(a + 2 * Page, Page, write: true);
        using AddressSpace child = parent.Fork();

        // copy_huge_pmd refuses a pinned block: the parent's PMD is split, the pinned page copied for the child.
        Assert.False(IsHugeAt(parent, a));
        Assert.False(IsHugeAt(child, a));
        Assert.Equal(head + 2, Pte.Frame(parent.Descriptor.PageTable.Lookup(a + 2 * Page, parent.Descriptor.Probes)));
        Assert.NotEqual(head + 2, Pte.Frame(child.Descriptor.PageTable.Lookup(a + 2 * Page, child.Descriptor.Probes)));
        Assert.Equal(head + 3, Pte.Frame(child.Descriptor.PageTable.Lookup(a + 3 * Page, child.Descriptor.Probes)));
        using Cpu childCpu = child.AttachCpu();
        Assert.Equal(22L, childCpu.Load<long>(a + 2 * Page));
        // The parent writes its pinned page in place: the pin keeps seeing the parent's page.
        cpu.Store(a + 2 * Page, -22L);
        Assert.Equal(head + 2, Pte.Frame(parent.Descriptor.PageTable.Lookup(a + 2 * Page, parent.Descriptor.Probes)));
        Assert.Equal(22L, childCpu.Load<long>(a + 2 * Page));
        Assert.Equal(33L, childCpu.Load<long>(a + 3 * Page));
    }
}
