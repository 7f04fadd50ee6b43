using Faultline.Paging;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// The software TLB's one-compare hit: a tag is the page's address with the offset bits set, the key of an access that
/// of its last byte's page, looked up in the slot of its first byte's page. So a hit needs the whole access in the
/// slot's page, an empty slot (0) never matches, and the one key that wraps (an access within its size of 2^64)
/// names page 0 while it looks in the last slot.
/// </summary>
public sealed unsafe class TlbKeyTests
{
    private const ulong Page = PageGeometry.PageSize;

    private static bool Hits(SoftwareTlb tlb, ulong address, int size) =>
        SoftwareTlb.SlotOf(address, tlb.OffsetMask, tlb.Entries)->ReadTag == TlbEntry.KeyFor(address, size);

    [Fact]
    public void AnAccessHitsOnlyWhenItLiesWholeInTheSlotsPage()
    {
        var tlb = new SoftwareTlb(16);
        tlb.Fill(5, Pte.Present | Pte.Writable | Pte.Dirty, 0x1000_0000);

        Assert.True(Hits(tlb, 5 * Page, 8));
        Assert.True(Hits(tlb, 6 * Page - 8, 8));
        Assert.False(Hits(tlb, 6 * Page - 4, 8)); // crosses into page 6
        Assert.False(Hits(tlb, 4 * Page + 4088, 16)); // from page 4 into 5
        Assert.False(Hits(tlb, 21 * Page, 8)); // page 21 shares the slot
        Assert.False(Hits(tlb, 7 * Page, 1)); // an empty slot
    }

    [Fact]
    public void TheKeyThatWrapsNamesPageZeroInAnotherSlot()
    {
        var tlb = new SoftwareTlb(2);
        tlb.Fill(0, Pte.Present, 0x1000_0000);
        tlb.Fill(ulong.MaxValue >> PageGeometry.PageShift, Pte.Present, 0x2000_0000);
        Assert.True(Hits(tlb, 0, 8));

        Assert.Equal(TlbEntry.TagFor(0), TlbEntry.KeyFor(ulong.MaxValue - 3, 8));
        Assert.False(Hits(tlb, ulong.MaxValue - 3, 8));
        Assert.True(Hits(tlb, ulong.MaxValue - 7, 8));
    }

    // Through a scope: the access that wraps past 2^64 misses and is refused while page 0 is in the TLB.
    [Fact]
    public void AScopedAccessAtTheTopOfTheAddressSpaceIsRefusedWithPageZeroCached()
    {
        using var space = new AddressSpace(new FaultlineOptions { MmapMinAddress = 0, TlbEntries = 2, PhysicalMemoryBytes = 16 << 20 });
        ulong a = MapFixed(space, 0, Page);
        using Cpu cpu = space.AttachCpu();
        using CpuScope scope = cpu.EnterScope();
        scope.Store(a, 0x5A5AL);
        Assert.Equal(0x5A5AL, scope.Load<long>(0));

        Assert.Equal(AccessOutcome.SegvMapErr, scope.TryLoad(ulong.MaxValue - 3, out long _));
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(ulong.MaxValue - 3, out long _));
        Assert.Equal(0x5A5AL, scope.Load<long>(0));
    }
}
