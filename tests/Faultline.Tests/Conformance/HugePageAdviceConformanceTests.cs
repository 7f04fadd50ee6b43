using System.Text;
using Faultline.Host;
using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>
/// <c>MADV_HUGEPAGE</c> and <c>MADV_NOHUGEPAGE</c> against the host kernel, under the host's own THP mode: the errno of
/// each call, the VMA splits and merges they cause, and the smaps <c>hg</c>/<c>nh</c> flags. Nothing is touched, so the
/// host's huge faults (which Faultline does not have yet) play no part.
/// </summary>
[Collection(HostRegionCollection.Name)]
public class HugePageAdviceConformanceTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const int Anon = Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS;
    private const int SharedAnon = Linux.MAP_SHARED | Linux.MAP_ANONYMOUS;

    [HostThpFact]
    public void AdviceSplitsMergesAndShowsInSmapsAsOnTheHost()
    {
        using var region = new HostRegion(32 * Page);
        using var space = new AddressSpace(new FaultlineOptions
        {
            PhysicalMemoryBytes = 16 << 20,
            TransparentHugePages = HostTransparentHugePages.Mode!.Value,
            MapZeroPageOnRead = HostFacts.Current.ReadFaultMapsZeroPage,
        });
        ulong s = region.Start;
        Assert.Equal(0, region.Unmap(s, region.Size));
        // Private anonymous [s, s + 16 pages), a hole, shared anonymous [s + 20 pages, s + 24 pages).
        Assert.Equal(0, region.Map(s, 16 * Page, Linux.PROT_READ | Linux.PROT_WRITE, Anon | Linux.MAP_FIXED));
        space.Map(s, 16 * Page, Protection.ReadWrite, (MapFlags)(Anon | Linux.MAP_FIXED));
        Assert.Equal(0, region.Map(s + 20 * Page, 4 * Page, Linux.PROT_READ | Linux.PROT_WRITE, SharedAnon | Linux.MAP_FIXED));
        space.Map(s + 20 * Page, 4 * Page, Protection.ReadWrite, (MapFlags)(SharedAnon | Linux.MAP_FIXED));

        (ulong Start, ulong Length, int Advice)[] calls =
        [
            (s + 4 * Page, 4 * Page, Linux.MADV_HUGEPAGE),       // split in three
            (s + 6 * Page, 4 * Page, Linux.MADV_NOHUGEPAGE),     // hg, nh, plain pieces
            (s + 6 * Page, 2 * Page, Linux.MADV_HUGEPAGE),       // merges back with the hg piece before it
            (s + 1, Page, Linux.MADV_HUGEPAGE),                  // unaligned: EINVAL
            (s + 14 * Page, 8 * Page, Linux.MADV_HUGEPAGE),      // over the hole: ENOMEM, the mapped parts still advised
            (s + 20 * Page, 4 * Page, Linux.MADV_NOHUGEPAGE),    // shared anonymous memory takes it too
            (s, 16 * Page, Linux.MADV_HUGEPAGE),                 // one VMA again
        ];
        foreach ((ulong start, ulong length, int advice) in calls)
        {
            int hostErrno = region.Advise(start, length, advice);
            Errno ours = space.TryAdvise(start, length, (Advice)advice);
            Assert.Equal(hostErrno, (int)ours);
            List<SmapsEntry> host = HostSmaps.ReadRegion(s, s + 24 * Page);
            List<SmapsEntry> mine = HostSmaps.Parse(Encoding.ASCII.GetBytes(space.GetSmaps()), s, s + 24 * Page);
            Assert.Equal(host.Select(Describe), mine.Select(Describe));
        }
    }

    private static string Describe(SmapsEntry e) => $"{e.Start:x}-{e.End:x} {e.Perms} VmFlags {e.VmFlags}";
}
