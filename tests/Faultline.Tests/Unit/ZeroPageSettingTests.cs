using System.Text.RegularExpressions;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// <see cref="FaultlineOptions.MapZeroPageOnRead"/> on both settings and every fault path, independent of what the
/// host kernel does: with the zero page, reads leave nothing resident in Rss and a later write copies; without it
/// (<c>mm_forbids_zeropage</c>), each read takes its own zeroed frame, writable and dirty in a writable VMA.
/// </summary>
public class ZeroPageSettingTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x2000_0000_0000;
    private const int Pages = 8;

    public static TheoryData<FaultPath, bool> PathsAndSettings()
    {
        var data = new TheoryData<FaultPath, bool>();
        foreach (FaultPath path in new[] { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock })
        {
            data.Add(path, true);
            data.Add(path, false);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(PathsAndSettings))]
    public void ReadsOfAWritableMappingFollowTheSetting(FaultPath path, bool zeroPage)
    {
        using var space = NewSpace(path, zeroPage);
        ulong a = MapFixed(space, Base, Pages * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();

        for (int i = 0; i < Pages; i++)
        {
            Assert.Equal(0L, cpu.Load<long>(a + (ulong)i * Page));
        }

        Assert.All(Enumerable.Range(0, Pages), i => Assert.True(space.IsResident(a + (ulong)i * Page)));
        Assert.Equal(zeroPage ? 0 : Pages, space.CountResidentPages(a, a + Pages * Page));
        Assert.Equal(zeroPage ? 0 : Pages, SmapsKb(space, "Private_Dirty") / 4);
        Assert.Equal(zeroPage ? 1 : Pages, Enumerable.Range(0, Pages).Select(i => FrameOf(space, a + (ulong)i * Page)).Distinct().Count());

        Dictionary<string, long> before = Counters(space);
        for (int i = 0; i < Pages; i++)
        {
            cpu.Store(a + (ulong)i * Page, (long)i + 1);
        }
        // With the zero page each write faults to copy it; without, the read already mapped a writable frame.
        Assert.Equal(zeroPage ? Pages : 0, Delta(before, space, "wp_fault"));
        Assert.Equal(zeroPage ? Pages : 0, Delta(before, space, "pgfault"));
        Assert.Equal(Pages, space.CountResidentPages(a, a + Pages * Page));
        for (int i = 0; i < Pages; i++)
        {
            Assert.Equal((long)i + 1, second.Load<long>(a + (ulong)i * Page));
        }
    }

    [Theory]
    [MemberData(nameof(PathsAndSettings))]
    public void ReadsOfAReadOnlyMappingGiveCleanReadOnlyPages(FaultPath path, bool zeroPage)
    {
        using var space = NewSpace(path, zeroPage);
        ulong a = MapFixed(space, Base, Pages * Page, Protection.Read);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();

        for (int i = 0; i < Pages; i++)
        {
            Assert.Equal(0, cpu.Load<int>(a + (ulong)i * Page));
        }

        Assert.Equal(zeroPage ? 0 : Pages, space.CountResidentPages(a, a + Pages * Page));
        Assert.Equal(0, SmapsKb(space, "Private_Dirty"));
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(a, 1));
        Assert.Equal(0, cpu.Load<int>(a));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void PopulatingAReadOnlyMappingFollowsTheSetting(bool zeroPage)
    {
        using var space = NewSpace(FaultPath.MmapLock, zeroPage);
        ulong a = space.Map(Base, Pages * Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.Populate);

        Assert.All(Enumerable.Range(0, Pages), i => Assert.True(space.IsResident(a + (ulong)i * Page)));
        Assert.Equal(zeroPage ? 0 : Pages, space.CountResidentPages(a, a + Pages * Page));
        Assert.Equal(zeroPage ? 0 : Pages, space.ResidentPages);
    }

    [Fact]
    public void WithoutTheZeroPageAReadTakesAWritableDirtyFrameThatAWriteKeeps()
    {
        using var space = NewSpace(FaultPath.MmapLock, zeroPage: false);
        ulong a = MapFixed(space, Base, 2 * Page);
        using Cpu cpu = space.AttachCpu();
        Assert.Equal(0L, cpu.Load<long>(a));
        long frame = FrameOf(space, a);
        ulong pte = space.Descriptor.PageTable.Lookup(a, space.Descriptor.Probes);
        Assert.True((pte & Faultline.Paging.Pte.Writable) != 0 && (pte & Faultline.Paging.Pte.Dirty) != 0);
        cpu.Store(a, 7L);
        Assert.Equal(frame, FrameOf(space, a));
        Assert.Equal(1, space.ResidentPages);
    }

    private static AddressSpace NewSpace(FaultPath path, bool zeroPage) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20, MapZeroPageOnRead = zeroPage });

    private static long FrameOf(AddressSpace space, ulong address) =>
        Faultline.Paging.Pte.Frame(space.Descriptor.PageTable.Lookup(address, space.Descriptor.Probes));

    private static long SmapsKb(AddressSpace space, string field) =>
        Regex.Matches(space.GetSmaps(), $@"^{field}:\s+(\d+) kB", RegexOptions.Multiline).Sum(m => long.Parse(m.Groups[1].Value));
}
