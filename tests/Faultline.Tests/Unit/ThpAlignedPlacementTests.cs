using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// Linux's <c>__get_unmapped_area</c> with transparent huge pages built in: a hint-less private anonymous mapping (or
/// an mremap move of one) whose length is a whole number of PMDs is placed PMD-aligned, by searching a PMD more and
/// aligning within it (<c>thp_get_unmapped_area_vmflags</c>). A replay of python3 recorded on a 6.18 host found the
/// rule (the kernel mapped 128 MiB at 0x7fffee800000, 2 MiB-aligned, right below a page-aligned mapping; Faultline did
/// not align); the expected addresses follow the kernel's arithmetic, and the real-program replay tests compare the
/// placement with the host's.
/// </summary>
public class ThpAlignedPlacementTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Pmd = PageGeometry.PmdSize;
    private const ulong Base = 0x7FFF_F7FF_F000UL;

    private static AddressSpace Space(bool aligned = true) =>
        new(new FaultlineOptions { PhysicalMemoryBytes = 1 << 20, MmapBase = Base, ThpAlignedPlacement = aligned });

    [Fact]
    public void AWholePmdLengthIsPlacedOnAPmdBoundaryBelowTheLastMapping()
    {
        using AddressSpace space = Space();
        ulong small = space.Map(0, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);

        ulong large = space.Map(0, 2 * Pmd, Protection.None, MapFlags.PrivateAnonymous | MapFlags.NoReserve);

        Assert.Equal(Base - Page, small);
        // The padded search finds [small - 3 PMDs, small); the start moves up to the next boundary.
        Assert.Equal(0UL, large % Pmd);
        Assert.Equal((small - 3 * Pmd + Pmd - 1) & ~(Pmd - 1), large);
        Assert.True(large + 2 * Pmd <= small);
    }

    [Fact]
    public void AnAlignedCandidateMovesUpToTheTopOfThePaddedGap()
    {
        using AddressSpace space = new(new FaultlineOptions { PhysicalMemoryBytes = 1 << 20, MmapBase = 0x7F00_0000_0000UL });

        // The padded search returns base - 2 PMDs, already aligned: top-down, the mapping takes the upper PMD of it.
        Assert.Equal(0x7F00_0000_0000UL - Pmd, space.Map(0, Pmd, Protection.Read, MapFlags.PrivateAnonymous));
    }

    [Theory]
    [InlineData(3 * Pmd / 2, MapFlags.PrivateAnonymous, 0UL)]
    [InlineData(2 * Pmd, MapFlags.Shared | MapFlags.Anonymous, 0UL)]
    [InlineData(2 * Pmd, MapFlags.PrivateAnonymous, 0x6000_0000_1000UL)]
    public void OtherLengthsSharedMemoryAndHintsArePlacedAsUsual(ulong length, MapFlags flags, ulong hint)
    {
        using AddressSpace space = Space();
        space.Map(0, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);

        ulong mapped = space.Map(hint, length, Protection.Read, flags);

        Assert.Equal(hint != 0 ? hint : Base - Page - length, mapped);
    }

    [Fact]
    public void TurnedOffAWholePmdLengthIsPlacedAsAnyOther()
    {
        using AddressSpace space = Space(aligned: false);
        space.Map(0, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);

        Assert.Equal(Base - Page - 2 * Pmd, space.Map(0, 2 * Pmd, Protection.Read, MapFlags.PrivateAnonymous));
    }

    [Fact]
    public void AnMremapMoveToAWholePmdLengthIsPmdAligned()
    {
        using AddressSpace space = Space();
        // A page above the block, so that it cannot grow in place.
        space.Map(0, Page, Protection.Read, MapFlags.PrivateAnonymous);
        ulong block = space.Map(0, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);

        ulong moved = space.Remap(block, 2 * Page, 2 * Pmd, RemapFlags.MayMove);

        Assert.NotEqual(block, moved);
        Assert.Equal(0UL, moved % Pmd);
    }
}
