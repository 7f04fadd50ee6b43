using Faultline.Host;
using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>
/// The host kernel and Faultline agree on <c>stack_guard_gap</c>: an mmap hint inside the 256 pages below a
/// MAP_GROWSDOWN mapping is not taken, a 2-page hint ending where the gap begins (258
/// pages below) is.
/// </summary>
[Collection(HostRegionCollection.Name)]
public class StackGuardGapConformanceTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const int Anon = Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS;

    [Theory]
    [InlineData(300, true)]
    [InlineData(258, true)]
    [InlineData(257, false)]
    [InlineData(200, false)]
    [InlineData(2, false)]
    public void HintBelowAGrowsDownMappingIsTakenOnlyOutsideTheGuardGap(int pagesBelowStack, bool taken)
    {
        using var region = new HostRegion(512 * Page);
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        ulong stack = region.Start + 400 * Page;
        Assert.Equal(0, region.Unmap(region.Start, region.Size));
        Assert.Equal(0, region.Map(stack, 8 * Page, Linux.PROT_READ | Linux.PROT_WRITE, Anon | Linux.MAP_FIXED | Linux.MAP_GROWSDOWN));
        space.Map(stack, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.GrowsDown);
        ulong hint = stack - (ulong)pagesBelowStack * Page;

        Assert.Equal(0, region.Map(hint, 2 * Page, Linux.PROT_READ, Anon, out ulong hostMapped));
        ulong ours = space.Map(hint, 2 * Page, Protection.Read, MapFlags.PrivateAnonymous);

        Assert.Equal(taken, hostMapped == hint);
        Assert.Equal(taken, ours == hint);
    }
}
