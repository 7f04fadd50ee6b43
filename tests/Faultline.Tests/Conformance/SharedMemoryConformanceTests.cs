using Faultline.Host;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Conformance;

/// <summary>
/// Shared anonymous memory against the host kernel, step by step on each fault path: after every step the maps lines
/// (with offset, device, name, and which VMAs share an inode), pagemap residency, mincore over the whole region, smaps
/// and the data must agree. The steps reach what random sequences rarely combine: pages cached but unmapped after
/// MADV_DONTNEED (mincore reports them, a read maps its fault-around window), a punched hole, splits that keep the
/// object, and shared memory populated by mlock and MAP_POPULATE.
/// </summary>
[Collection(HostRegionCollection.Name)]
public class SharedMemoryConformanceTests
{
    private const ulong Page = MirroredSpace.Page;
    private const int Pages = 64;
    private const int Rw = Linux.PROT_READ | Linux.PROT_WRITE;
    private const int SharedFixed = Linux.MAP_SHARED | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED;

    private readonly ITestOutputHelper _output;

    public SharedMemoryConformanceTests(ITestOutputHelper output) => _output = output;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    [Theory]
    [MemberData(nameof(Paths))]
    public void SharedAnonymousMemoryMatchesTheHostKernelStepByStep(FaultPath path)
    {
        _output.WriteLine(HostFacts.Current.Describe());
        using var region = new HostRegion(Pages * Page);
        using var mirror = new MirroredSpace(region, path);
        ulong At(int page) => mirror.Start + (ulong)page * Page;
        int step = 0;
        void Check(string? difference = null)
        {
            difference ??= mirror.CompareMaps() ?? CompareMapsDetails(mirror) ?? mirror.CompareResidency()
                ?? mirror.Mincore(mirror.Start, Pages * Page) ?? mirror.CompareSmaps();
            Assert.True(difference is null, $"step {step}: {difference}\nhistory:\n{mirror.History}");
            step++;
        }
        void Errnos((int Host, int Ours) result) => Check(result.Host == result.Ours ? null : $"errno differs: host {result.Host}, ours {result.Ours}");
        void Touch(int first, int end, bool write, byte value = 0)
        {
            for (int page = first; page < end; page++)
            {
                Check(mirror.Touch(At(page) + 8, write, (byte)(value + page)));
            }
            Check();
        }

        Errnos(mirror.Map(At(4), 40 * Page, Rw, SharedFixed));
        Touch(4, 44, write: true, 1);
        Errnos(mirror.Advise(At(4), 40 * Page, Linux.MADV_DONTNEED));
        Check();
        // One read maps the cached pages of its aligned window; another in the next window.
        Touch(25, 26, write: false);
        Touch(40, 41, write: false);
        Errnos(mirror.Advise(At(14), 4 * Page, Linux.MADV_REMOVE));
        Touch(15, 16, write: false);
        Touch(13, 19, write: false);
        Errnos(mirror.Advise(At(4), Page, Linux.MADV_FREE));
        Errnos(mirror.Advise(At(4), Page, 18));
        // A split keeps the object with the offset moving on; restoring the protection merges the pieces back.
        Errnos(mirror.Protect(At(9), 2 * Page, Linux.PROT_READ));
        Touch(9, 11, write: true, 40);
        Errnos(mirror.Protect(At(9), 2 * Page, Rw));
        Touch(9, 11, write: true, 50);
        // A second object next to the first does not merge with it; a private mapping replaces a piece.
        Errnos(mirror.Map(At(44), 4 * Page, Rw, SharedFixed));
        Touch(42, 46, write: true, 60);
        Errnos(mirror.Map(At(30), 2 * Page, Rw, Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED));
        Touch(28, 34, write: false);
        Errnos(mirror.Lock(At(4), 4 * Page, 0));
        Errnos(mirror.Msync(At(4), 8 * Page, 4));
        Errnos(mirror.Advise(At(4), Page, Linux.MADV_REMOVE));
        Errnos(mirror.Unlock(At(4), 4 * Page));
        Errnos(mirror.Advise(At(4), 8 * Page, Linux.MADV_REMOVE));
        Touch(4, 12, write: false);
        // Read-only shared memory: the object is writable, so holes may be punched and the mapping made writable.
        Errnos(mirror.Map(At(50), 4 * Page, Linux.PROT_READ, SharedFixed));
        Touch(50, 54, write: true, 70);
        Errnos(mirror.Advise(At(50), 2 * Page, Linux.MADV_REMOVE));
        Errnos(mirror.Protect(At(50), 4 * Page, Rw));
        Touch(50, 54, write: true, 80);
        // MAP_POPULATE and MADV_POPULATE_READ fault shared memory in for reading: clean pages.
        Errnos(mirror.Map(At(56), 4 * Page, Rw, SharedFixed | Linux.MAP_POPULATE));
        Errnos(mirror.Advise(At(44), 4 * Page, Linux.MADV_DONTNEED));
        Errnos(mirror.Advise(At(44), 2 * Page, 22));
        Errnos(mirror.Advise(At(46), 2 * Page, 23));
        Errnos(mirror.Unmap(At(20), 10 * Page));
        Touch(0, Pages, write: false);
        _output.WriteLine($"{step} checks, 0 differences");
    }

    // Offset, device and name of each VMA of the region, and which VMAs share an inode (numbers differ between the
    // host and Faultline, the grouping must not).
    private static string? CompareMapsDetails(MirroredSpace mirror)
    {
        List<MapsLine> host = HostMaps.ReadRegion(mirror.Start, mirror.End);
        List<MappingInfo> ours = mirror.Space.GetMappings().Where(m => m.End > mirror.Start && m.Start < mirror.End).ToList();
        if (host.Count != ours.Count)
        {
            return $"maps: host {host.Count} lines, ours {ours.Count}";
        }
        for (int i = 0; i < ours.Count; i++)
        {
            MapsLine h = host[i];
            MappingInfo o = ours[i];
            string ourDevice = $"{o.DeviceMajor:x2}:{o.DeviceMinor:x2}";
            if ((h.Offset, h.Device, h.Name) != (o.Offset, ourDevice, o.Name))
            {
                return $"maps line {i}: host {h}, ours {o}";
            }
            for (int j = 0; j < i; j++)
            {
                if ((h.Inode == host[j].Inode) != (o.Inode == ours[j].Inode))
                {
                    return $"maps lines {j} and {i}: host inodes {host[j].Inode}, {h.Inode}; ours {ours[j].Inode}, {o.Inode}";
                }
            }
        }
        return null;
    }
}
