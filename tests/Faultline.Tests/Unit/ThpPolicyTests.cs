using Faultline.Areas;
using Faultline.Mm;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// <see cref="ThpPolicy"/>, the <c>thp_vma_allowable_order</c> of Faultline: the THP mode, the per-mapping advice, the
/// kind of mapping and the 2 MiB block around the address.
/// </summary>
public class ThpPolicyTests
{
    private const ulong Huge = PageGeometry.PmdSize;
    private const ulong Start = 0x4000_0000;
    private const VmFlags Anon = VmFlags.Read | VmFlags.Write | VmFlags.MayRead | VmFlags.MayWrite;

    [Theory]
    [InlineData(TransparentHugePageMode.Always, (ulong)VmFlags.None, true)]
    [InlineData(TransparentHugePageMode.Always, (ulong)VmFlags.HugePage, true)]
    [InlineData(TransparentHugePageMode.Always, (ulong)VmFlags.NoHugePage, false)]
    [InlineData(TransparentHugePageMode.Madvise, (ulong)VmFlags.None, false)]
    [InlineData(TransparentHugePageMode.Madvise, (ulong)VmFlags.HugePage, true)]
    [InlineData(TransparentHugePageMode.Madvise, (ulong)VmFlags.NoHugePage, false)]
    [InlineData(TransparentHugePageMode.Never, (ulong)VmFlags.None, false)]
    [InlineData(TransparentHugePageMode.Never, (ulong)VmFlags.HugePage, false)]
    public void ModeAndAdviceDecide(TransparentHugePageMode mode, ulong advice, bool expected) =>
        Assert.Equal(expected, ThpPolicy.MayUseHugePage(Anon | (VmFlags)advice, anonymous: true, Start, Start + Huge, mode, Start + 0x1234));

    [Theory]
    [InlineData((ulong)VmFlags.Shared)]
    [InlineData((ulong)VmFlags.Io)]
    [InlineData((ulong)VmFlags.PfnMap)]
    [InlineData((ulong)VmFlags.DontExpand)]
    [InlineData((ulong)VmFlags.MixedMap)]
    public void SharedAndSpecialMappingsAreNotEligible(ulong kind) =>
        Assert.False(ThpPolicy.MayUseHugePage(Anon | (VmFlags)kind, anonymous: true, Start, Start + Huge, TransparentHugePageMode.Always, Start));

    [Fact]
    public void FileMappingsAreNotEligible() =>
        Assert.False(ThpPolicy.MayUseHugePage(Anon, anonymous: false, Start, Start + Huge, TransparentHugePageMode.Always, Start));

    [Fact]
    public void OnlyAddressesWhoseAlignedBlockLiesInsideTheMappingAreEligible()
    {
        // [Start + 4 KiB, Start + 4 MiB + 4 KiB) holds one whole aligned block: [Start + 2 MiB, Start + 4 MiB).
        ulong start = Start + PageGeometry.PageSize;
        ulong end = Start + 2 * Huge + PageGeometry.PageSize;
        bool At(ulong address) => ThpPolicy.MayUseHugePage(Anon, true, start, end, TransparentHugePageMode.Always, address);
        Assert.False(At(start));
        Assert.False(At(Start + Huge - 1));
        Assert.True(At(Start + Huge));
        Assert.True(At(Start + 2 * Huge - 1));
        Assert.False(At(Start + 2 * Huge));
        Assert.False(ThpPolicy.MayUseHugePage(Anon, true, Start, Start + Huge - PageGeometry.PageSize,
            TransparentHugePageMode.Always, Start));
    }

    [Fact]
    public void MappingAtTheTopOfTheAddressSpaceDoesNotOverflow()
    {
        // The last aligned block ends at 2^64, which wraps to 0: it must not count as inside a mapping ending below it.
        ulong lastBlock = ~(Huge - 1);
        ulong end = ulong.MaxValue - PageGeometry.PageSize + 1;
        Assert.False(ThpPolicy.MayUseHugePage(Anon, true, lastBlock, end, TransparentHugePageMode.Always, lastBlock));
        Assert.True(ThpPolicy.MayUseHugePage(Anon, true, lastBlock - Huge, lastBlock, TransparentHugePageMode.Always, lastBlock - 1));
    }

    [Fact]
    public void AdviceOnAnAddressSpaceReachesThePolicyThroughTheMapping()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        Assert.Equal(TransparentHugePageMode.Madvise, space.Descriptor.Settings.TransparentHugePages);
        ulong a = SpaceHelpers.MapFixed(space, Start, 2 * Huge);
        bool Eligible() => ThpPolicy.MayUseHugePage(space.Descriptor.Tree.LookupLockless(a)!, space.Descriptor.Settings, a);

        Assert.False(Eligible());
        space.Advise(a, 2 * Huge, Advice.HugePage);
        Assert.True(Eligible());
        space.Advise(a, 2 * Huge, Advice.NoHugePage);
        Assert.False(Eligible());
    }

    [Fact]
    public void AlwaysModeReachesTheSettingsAndAnUndefinedModeIsRefused()
    {
        using var space = new AddressSpace(new FaultlineOptions
        {
            PhysicalMemoryBytes = 16 << 20, TransparentHugePages = TransparentHugePageMode.Always,
        });
        ulong a = SpaceHelpers.MapFixed(space, Start, Huge);
        Assert.True(ThpPolicy.MayUseHugePage(space.Descriptor.Tree.LookupLockless(a)!, space.Descriptor.Settings, a));
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            new AddressSpace(new FaultlineOptions { TransparentHugePages = (TransparentHugePageMode)7 }));
    }
}
