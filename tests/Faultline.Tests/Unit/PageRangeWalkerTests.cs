using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

public class PageRangeWalkerTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong PmdSpan = PageGeometry.PmdSize;
    private const ulong Base = 0x40_0000_0000UL;

    private readonly record struct Visit(bool Huge, long Table, int First, int End, ulong Address);

    // Records every callback, in order.
    private struct RecordingVisitor() : IPageRangeVisitor
    {
        public List<Visit> Visits { get; } = [];

        public readonly void VisitPteTable(long pteTable, int firstIndex, int endIndex, ulong tableBase) =>
            Visits.Add(new Visit(false, pteTable, firstIndex, endIndex, tableBase));

        public readonly void VisitHugePmd(long pmdTable, int pmdIndex, ulong address) =>
            Visits.Add(new Visit(true, pmdTable, pmdIndex, pmdIndex + 1, address));
    }

    private static List<Visit> Walk(PageTable table, ulong start, ulong end)
    {
        var recorder = new RecordingVisitor();
        table.Walker.Walk(start, end, ref recorder);
        return recorder.Visits;
    }

    private static long PteTableOf(AddressSpace space, ulong address)
    {
        Assert.Equal(WalkStatus.Ok, space.Descriptor.PageTable.WalkLockless(address, out PteLocation at, out _));
        return at.PteTable;
    }

    private static void Touch(Cpu cpu, ulong start, ulong pages)
    {
        for (ulong p = 0; p < pages; p++)
        {
            cpu.Store(start + p * Page, (long)p + 1);
        }
    }

    [Fact]
    public void RangeStartingAndEndingMidTableVisitsTheCutPartsOfEachTable()
    {
        using var space = new AddressSpace();
        MapFixed(space, Base, 2 * PmdSpan);
        using Cpu cpu = space.AttachCpu();
        Touch(cpu, Base + PmdSpan - 4 * Page, 8);
        long first = PteTableOf(space, Base), second = PteTableOf(space, Base + PmdSpan);

        List<Visit> visits = Walk(space.Descriptor.PageTable, Base + 10 * Page, Base + PmdSpan + 3 * Page);

        Assert.Equal(
            [new Visit(false, first, 10, PageGeometry.EntriesPerTable, Base), new Visit(false, second, 0, 3, Base + PmdSpan)],
            visits);
        ResidentCounts counts = space.Descriptor.PageTable.CountResident(Base + 10 * Page, Base + PmdSpan + 3 * Page);
        Assert.Equal((7L, 7L, 7L, 7L), (counts.Rss, counts.Present, counts.Referenced, counts.Dirty));
        Assert.Equal((0L, 7L), (counts.SharedDirty, counts.PrivateDirty));
        Assert.Equal((long)(7 * Page) << ResidentCounts.PssShift, counts.ScaledPss);
    }

    [Fact]
    public void RangeInsideOneTableVisitsOnlyItsIndices()
    {
        using var space = new AddressSpace();
        MapFixed(space, Base, 16 * Page);
        using Cpu cpu = space.AttachCpu();
        Touch(cpu, Base, 16);

        List<Visit> visits = Walk(space.Descriptor.PageTable, Base + 3 * Page, Base + 5 * Page);

        Assert.Equal([new Visit(false, PteTableOf(space, Base), 3, 5, Base)], visits);
    }

    [Fact]
    public void SparseRangeAcrossPgdBoundariesVisitsOnlyPopulatedTables()
    {
        using var space = new AddressSpace();
        ulong low = PageGeometry.PgdSize - Page, high = 5 * PageGeometry.PgdSize + 7 * PmdSpan;
        MapFixed(space, low, 2 * Page);
        MapFixed(space, high, Page);
        using Cpu cpu = space.AttachCpu();
        Touch(cpu, low, 2);
        Touch(cpu, high, 1);

        List<Visit> visits = Walk(space.Descriptor.PageTable, 0, PageGeometry.TaskSize);

        Assert.Equal(
        [
            new Visit(false, PteTableOf(space, low), 0, PageGeometry.EntriesPerTable, PageGeometry.PgdSize - PmdSpan),
            new Visit(false, PteTableOf(space, low + Page), 0, PageGeometry.EntriesPerTable, PageGeometry.PgdSize),
            new Visit(false, PteTableOf(space, high), 0, PageGeometry.EntriesPerTable, high),
        ], visits);
        Assert.Equal(3, space.Descriptor.PageTable.CountResident(0, PageGeometry.TaskSize).Rss);
    }

    [Fact]
    public void EmptyRangesVisitNothing()
    {
        using var space = new AddressSpace();
        MapFixed(space, Base, 4 * Page);
        using Cpu cpu = space.AttachCpu();
        Touch(cpu, Base, 4);
        PageTable table = space.Descriptor.PageTable;

        Assert.Empty(Walk(table, Base + Page, Base + Page));
        Assert.Empty(Walk(table, Base + 2 * PmdSpan, Base + 3 * PageGeometry.PgdSize));
        Assert.Empty(Walk(table, 0, Base - PageGeometry.PudSize));
        Assert.Equal(default, table.CountResident(Base + 4 * PmdSpan, Base + 5 * PmdSpan));
    }

    [Fact]
    public void HugePmdIsVisitedWholeCountedZappedAndReprotected()
    {
        using var space = new AddressSpace(new FaultlineOptions
        {
            PhysicalMemoryBytes = 16 << 20,
            TransparentHugePages = TransparentHugePageMode.Always,
        });
        MemoryDescriptor mm = space.Descriptor;
        PageTable table = mm.PageTable;
        ulong huge = Base + 4 * PmdSpan;
        space.Map(huge, PmdSpan, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);
        using (Cpu cpu = space.AttachCpu())
        {
            cpu.Store(huge + 5 * Page, 7L);
        }
        Assert.Equal(WalkStatus.HugePmd, table.WalkLockless(huge + 5 * Page, out _, out ulong subpage));
        long pfn = Pte.Frame(subpage) - 5;
        Assert.True(mm.Memory.IsHugeHead(pfn));

        List<Visit> visits = Walk(table, Base, huge + 2 * PmdSpan);
        Assert.Single(visits);
        Assert.True(visits[0].Huge);
        Assert.Equal(huge, visits[0].Address);
        ResidentCounts counts = table.CountResident(huge, huge + PmdSpan);
        Assert.Equal((PageGeometry.EntriesPerTable, PageGeometry.EntriesPerTable, PageGeometry.EntriesPerTable, PageGeometry.EntriesPerTable),
            ((int)counts.Rss, (int)counts.Present, (int)counts.Referenced, (int)counts.Dirty));
        Assert.Equal(PageGeometry.EntriesPerTable, counts.AnonHugePages);

        var protectGather = new MmuGather(mm.Memory, mm.Rcu);
        table.ChangeProtection(huge, huge + PmdSpan, new PageProtection(true, false, false), vmaMayWrite: false, protectGather);
        protectGather.Finish(mm.Probes);
        ulong entry = HugeEntry(table, visits[0]);
        Assert.Equal(Pte.Huge | Pte.Present, entry & (Pte.Huge | Pte.Present | Pte.Writable));
        Assert.Equal(pfn, Pte.Frame(entry));
        Assert.True(Walk(table, Base, huge + 2 * PmdSpan).Single().Huge);

        var zapGather = new MmuGather(mm.Memory, mm.Rcu);
        Assert.Equal(PageGeometry.EntriesPerTable, table.Zap(huge, huge + PmdSpan, zapGather, mm.Probes));
        zapGather.Finish(mm.Probes);
        Assert.Equal(0UL, HugeEntry(table, visits[0]));
        Assert.Empty(Walk(table, Base, huge + 2 * PmdSpan));
        Assert.Equal(FrameKind.Free, mm.Memory.Info(pfn).Kind);
    }

    private static unsafe ulong HugeEntry(PageTable table, Visit visit) => table.Entries(visit.Table)[visit.First];
}
