using System.Text;
using Faultline.Host;
using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>
/// The effects of mmap flags beyond placement, against the host kernel: the smaps VmFlags they set (MAP_STACK's
/// <c>nh</c>, MAP_SYNC's <c>sf</c> on a private mapping, MAP_LOCKED's <c>lo</c>), what they populate (MAP_LOCKED does,
/// MAP_POPULATE|MAP_NONBLOCK does not), that flags which differ keep neighbours apart, and MAP_32BIT's placement.
/// </summary>
[Collection(HostRegionCollection.Name)]
public class MapFlagsConformanceTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const int Anon = Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS;

    [Theory]
    [InlineData(Linux.MAP_STACK)]
    [InlineData(Linux.MAP_SYNC)]
    [InlineData(Linux.MAP_LOCKED)]
    [InlineData(Linux.MAP_POPULATE)]
    [InlineData(Linux.MAP_POPULATE | Linux.MAP_NONBLOCK)]
    [InlineData(Linux.MAP_LOCKED | Linux.MAP_NONBLOCK)]
    [InlineData(Linux.MAP_NORESERVE)]
    public void FlagsShowInSmapsPopulateAndKeepNeighboursApartAsOnTheHost(int flag)
    {
        using var region = new HostRegion(16 * Page);
        using var space = new AddressSpace(new FaultlineOptions
        {
            PhysicalMemoryBytes = 16 << 20,
            MapZeroPageOnRead = HostFacts.Current.ReadFaultMapsZeroPage,
            CapIpcLock = HostFacts.Current.HasCapIpcLock,
            MemoryLockLimit = HostFacts.Current.MemoryLockLimit,
        });
        ulong s = region.Start;
        Assert.Equal(0, region.Unmap(s, region.Size));
        // A plain neighbour on each side: a flag that changes vm_flags keeps the new VMA apart from them.
        foreach ((ulong at, int extra) in new[] { (s, 0), (s + 4 * Page, flag), (s + 8 * Page, 0) })
        {
            Assert.Equal(0, region.Map(at, 4 * Page, Linux.PROT_READ | Linux.PROT_WRITE, Anon | Linux.MAP_FIXED | extra));
            space.Map(at, 4 * Page, Protection.ReadWrite, (MapFlags)(Anon | Linux.MAP_FIXED | extra));
        }

        List<SmapsEntry> host = HostSmaps.ReadRegion(s, s + 12 * Page);
        List<SmapsEntry> ours = HostSmaps.Parse(Encoding.ASCII.GetBytes(space.GetSmaps()), s, s + 12 * Page);
        Assert.Equal(host.Select(Describe), ours.Select(Describe));
    }

    [Fact]
    public void Map32BitPlacesBelowTwoGibibytesAndIgnoresAHighHint()
    {
        using var region = new HostRegion(16 * Page);
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        Assert.Equal(0, region.Unmap(region.Start, region.Size));
        // The host unmaps at once what it placed outside the region; only the address matters here.
        Assert.Equal(0, region.Map(region.Start, Page, Linux.PROT_READ, Anon | Linux.MAP_32BIT, out ulong hostPlaced));
        ulong ours = space.Map(region.Start, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Map32Bit);

        Assert.InRange(hostPlaced, 0x4000_0000UL, 0x8000_0000UL - Page);
        Assert.InRange(ours, 0x4000_0000UL, 0x8000_0000UL - Page);
        Assert.Equal(0x7000_0000UL, space.Map(0x7000_0000, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Map32Bit));
    }

    private static string Describe(SmapsEntry e) =>
        $"{e.Start:x}-{e.End:x} {e.Perms} Rss {e.RssKb} Locked {e.LockedKb} Private_Dirty {e.PrivateDirtyKb} VmFlags {e.VmFlags}";
}
