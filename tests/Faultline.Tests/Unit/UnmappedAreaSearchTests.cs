using Faultline.Mm;
using Xunit;

namespace Faultline.Tests.Unit;

public class UnmappedAreaSearchTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Gap = UnmappedAreaSearch.StackGuardGap;
    private const ulong Stack = 0x20_0000_0000UL;

    private static AddressSpace SpaceWithStack(ulong mmapBase = 0x7F00_0000_0000UL)
    {
        var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 1 << 20, MmapBase = mmapBase });
        space.Map(Stack, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.GrowsDown);
        return space;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(255)]
    public void HintInsideTheGuardGapBelowAGrowsDownMappingIsDeclined(ulong pagesBelowStack)
    {
        using AddressSpace space = SpaceWithStack();
        ulong hint = Stack - pagesBelowStack * Page;

        ulong mapped = space.Map(hint, Page, Protection.Read, MapFlags.PrivateAnonymous);

        Assert.NotEqual(hint, mapped);
        Assert.True(mapped + Page <= Stack - Gap || mapped >= Stack + 8 * Page, $"placed at {mapped:x}, inside the guard gap");
    }

    [Fact]
    public void HintEndingWhereTheGuardGapBeginsIsTaken()
    {
        using AddressSpace space = SpaceWithStack();
        ulong hint = Stack - Gap - 2 * Page;

        Assert.Equal(hint, space.Map(hint, 2 * Page, Protection.Read, MapFlags.PrivateAnonymous));
    }

    [Fact]
    public void HintReachingOnePageIntoTheGuardGapIsDeclined()
    {
        using AddressSpace space = SpaceWithStack();
        ulong hint = Stack - Gap - Page;

        Assert.NotEqual(hint, space.Map(hint, 2 * Page, Protection.Read, MapFlags.PrivateAnonymous));
    }

    [Fact]
    public void TopDownSearchLeavesTheGuardGapBelowAGrowsDownMappingFree()
    {
        // The stack ends at mmap_base, so the highest free gap below the base is the one under the stack.
        using AddressSpace space = SpaceWithStack(mmapBase: Stack + 8 * Page);

        ulong mapped = space.Map(0, 4 * Page, Protection.Read, MapFlags.PrivateAnonymous);

        Assert.Equal(Stack - Gap - 4 * Page, mapped);
    }

    [Fact]
    public void BottomUpSearchSkipsAGapThatOnlyTheGuardGapWouldFit()
    {
        // Everything below mmap_base is taken except a hole of 300 pages under the stack, of which 256 are its guard
        // gap: a 100-page mapping does not fit there and goes above mmap_base.
        const ulong MinAddress = 0x10000;
        ulong holeStart = Stack - 300 * Page;
        using AddressSpace space = SpaceWithStack(mmapBase: Stack + 8 * Page);
        space.Map(MinAddress, holeStart - MinAddress, Protection.None, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.NoReserve);

        ulong small = space.Map(0, 40 * Page, Protection.Read, MapFlags.PrivateAnonymous);
        ulong large = space.Map(0, 100 * Page, Protection.Read, MapFlags.PrivateAnonymous);

        Assert.Equal(Stack - Gap - 40 * Page, small);
        Assert.Equal(Stack + 8 * Page, large);
    }
}
