using System.Text;
using Faultline.Concurrency;
using Faultline.Host;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// <see cref="FaultlineOptions.MapZeroPageOnRead"/> on every fault path, independent of the host: with the zero page a
/// read maps the shared zero frame (resident, Rss 0) and a write copies it; without it (<c>mm_forbids_zeropage</c>)
/// each read takes a private zeroed frame, writable and dirty only if the VMA has VM_WRITE, as
/// <c>do_anonymous_page</c> does.
/// </summary>
public sealed class ZeroPageSettingTests
{
    private const ulong Page = PageGeometry.PageSize;
    // 1 GiB: PMD-aligned, so the anchor and the read pages share one PTE table.
    private const ulong Base = 0x4000_0000;
    private const int Pages = 16;
    private const int JoinMs = 10_000;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    public static TheoryData<FaultPath, bool> PathsAndSettings
    {
        get
        {
            var data = new TheoryData<FaultPath, bool>();
            foreach (FaultPath path in new[] { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock })
            {
                data.Add(path, true);
                data.Add(path, false);
            }
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void WithTheZeroPageReadsStayOutOfRssAndALaterWriteCopiesTheZeroPage(FaultPath path)
    {
        using AddressSpace space = NewSpace(path, mapZeroPageOnRead: true);
        ulong first = MapWithWrittenAnchor(space);
        int framesBaseline = space.FramesInUse;
        Dictionary<string, long> before = Counters(space);

        WithCpu(space, cpu => ReadEach(cpu, first));

        Assert.Equal(framesBaseline, space.FramesInUse);
        Assert.Equal(0, space.CountResidentPages(first, first + Pages * Page));
        Assert.All(PageAddresses(first), page => Assert.True(space.IsResident(page)));
        Assert.Equal(Pages, Delta(before, space, "zero_page_fault"));
        Assert.Equal(0, Delta(before, space, "anon_fault"));
        Assert.Equal(Pages, Delta(before, space, HandledOnPathCounter(path)));
        Assert.Equal(1, space.ResidentPages);

        before = Counters(space);
        WithCpu(space, cpu => WriteEach(cpu, first));

        Assert.Equal(Pages, Delta(before, space, "wp_fault"));
        Assert.Equal(Pages, Delta(before, space, "nr_anon_pages"));
        Assert.Equal(framesBaseline + Pages, space.FramesInUse);
        Assert.Equal(Pages, space.CountResidentPages(first, first + Pages * Page));
        WithCpu(space, cpu => AssertWritten(cpu, first));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void WithoutTheZeroPageEachReadTakesItsOwnFrameAndALaterWriteTakesNoFault(FaultPath path)
    {
        using AddressSpace space = NewSpace(path, mapZeroPageOnRead: false);
        ulong first = MapWithWrittenAnchor(space);
        int framesBaseline = space.FramesInUse;
        Dictionary<string, long> before = Counters(space);

        WithCpu(space, cpu => ReadEach(cpu, first));

        Assert.Equal(framesBaseline + Pages, space.FramesInUse);
        Assert.Equal(Pages, space.CountResidentPages(first, first + Pages * Page));
        Assert.Equal(0, Delta(before, space, "zero_page_fault"));
        Assert.Equal(Pages, Delta(before, space, "anon_fault"));
        Assert.Equal(Pages, Delta(before, space, "nr_anon_pages"));
        Assert.Equal(Pages, Delta(before, space, HandledOnPathCounter(path)));
        Assert.Equal(1 + Pages, space.ResidentPages);
        // The VMA has VM_WRITE: every page, anchor and reads, is mapped writable and dirty.
        SmapsEntry smaps = OurSmaps(space);
        Assert.Equal((ulong)(1 + Pages) * 4, smaps.RssKb);
        Assert.Equal((ulong)(1 + Pages) * 4, smaps.AnonymousKb);
        Assert.Equal((ulong)(1 + Pages) * 4, smaps.PrivateDirtyKb);

        before = Counters(space);
        WithCpu(space, cpu => WriteEach(cpu, first));

        Assert.Equal(0, Delta(before, space, "pgfault"));
        Assert.Equal(0, Delta(before, space, "wp_fault"));
        Assert.Equal(framesBaseline + Pages, space.FramesInUse);
        WithCpu(space, cpu => AssertWritten(cpu, first));
    }

    [Theory]
    [MemberData(nameof(PathsAndSettings))]
    public void AReadOfAReadOnlyMappingMapsACleanPageThatCannotBeWritten(FaultPath path, bool mapZeroPageOnRead)
    {
        using AddressSpace space = NewSpace(path, mapZeroPageOnRead);
        ulong first = MapFixed(space, Base, Pages * Page, Protection.Read);
        int framesBaseline = space.FramesInUse, tablesBaseline = space.PageTablePages;

        WithCpu(space, cpu =>
        {
            ReadEach(cpu, first);
            Assert.All(PageAddresses(first), page => Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(page, (byte)1)));
        });

        long expectedRss = mapZeroPageOnRead ? 0 : Pages;
        Assert.Equal(expectedRss, space.CountResidentPages(first, first + Pages * Page));
        Assert.All(PageAddresses(first), page => Assert.True(space.IsResident(page)));
        SmapsEntry smaps = OurSmaps(space);
        Assert.Equal((ulong)expectedRss * 4, smaps.RssKb);
        Assert.Equal(0UL, smaps.PrivateDirtyKb);
        // Page tables aside, only the private frames are new.
        Assert.Equal(expectedRss, space.FramesInUse - framesBaseline - (space.PageTablePages - tablesBaseline));
        WithCpu(space, cpu => Assert.All(PageAddresses(first), page => Assert.Equal(0, cpu.Load<byte>(page))));

        // Writable again: a private frame is reused in place, the zero page is copied.
        space.Protect(first, Pages * Page, Protection.ReadWrite);
        Dictionary<string, long> before = Counters(space);
        WithCpu(space, cpu => WriteEach(cpu, first));
        Assert.Equal(mapZeroPageOnRead ? Pages : 0, Delta(before, space, "nr_anon_pages"));
        Assert.Equal(Pages, space.CountResidentPages(first, first + Pages * Page));
        Assert.Equal((ulong)Pages * 4, OurSmaps(space).PrivateDirtyKb);
        WithCpu(space, cpu => AssertWritten(cpu, first));
    }

    [Theory]
    [MemberData(nameof(PathsAndSettings))]
    public void PopulateOfAReadOnlyMappingFollowsTheSetting(FaultPath path, bool mapZeroPageOnRead)
    {
        using AddressSpace space = NewSpace(path, mapZeroPageOnRead);
        Dictionary<string, long> before = Counters(space);

        ulong first = space.Map(Base, Pages * Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.Populate);

        Assert.All(PageAddresses(first), page => Assert.True(space.IsResident(page)));
        Assert.Equal(mapZeroPageOnRead ? Pages : 0, Delta(before, space, "zero_page_fault"));
        Assert.Equal(mapZeroPageOnRead ? 0 : Pages, Delta(before, space, "anon_fault"));
        SmapsEntry smaps = OurSmaps(space);
        Assert.Equal(mapZeroPageOnRead ? 0UL : Pages * 4, smaps.RssKb);
        Assert.Equal(0UL, smaps.PrivateDirtyKb);
        before = Counters(space);
        WithCpu(space, cpu =>
        {
            ReadEach(cpu, first);
            Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(first, (byte)1));
        });
        Assert.Equal(0, Delta(before, space, "zero_page_fault") + Delta(before, space, "anon_fault"));
    }

    [Theory]
    [MemberData(nameof(PathsAndSettings))]
    public void PopulateOfAWritableMappingWritesEveryPage(FaultPath path, bool mapZeroPageOnRead)
    {
        using AddressSpace space = NewSpace(path, mapZeroPageOnRead);
        Dictionary<string, long> before = Counters(space);

        space.Map(Base, Pages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.Populate);

        Assert.Equal(0, Delta(before, space, "zero_page_fault"));
        Assert.Equal(Pages, Delta(before, space, "anon_fault"));
        SmapsEntry smaps = OurSmaps(space);
        Assert.Equal((ulong)Pages * 4, smaps.RssKb);
        Assert.Equal((ulong)Pages * 4, smaps.PrivateDirtyKb);
    }

    // Two Cpus read the same empty PTE without the zero page: one frame is installed, the loser gives its own back.
    [Theory]
    [MemberData(nameof(Paths))]
    public void TwoReadFaultsOnOnePageWithoutTheZeroPageInstallOneFrame(FaultPath path)
    {
        using AddressSpace space = NewSpace(path, mapZeroPageOnRead: false);
        ulong first = MapWithWrittenAnchor(space);
        int framesBaseline = space.FramesInUse;
        Cpu stopped = space.AttachCpu();
        Cpu racer = space.AttachCpu();
        Dictionary<string, long> before = Counters(space);

        using (var gate = new ProbeGate(space, ProbePoint.AnonymousBeforePteLock, ThreadRole.Is("reader")))
        {
            ThreadRunner<AccessOutcome> read = ThreadRole.Run("reader", () => stopped.TryLoad(first, out byte _));
            gate.WaitArrived(); // its frame is allocated and zeroed, the PTE still empty
            Assert.Equal(AccessOutcome.Ok, racer.TryLoad(first, out byte racerValue));
            Assert.Equal(0, racerValue);
            gate.Release();
            Assert.Equal(AccessOutcome.Ok, read.Join(JoinMs));
        }

        Assert.Equal(1, Delta(before, space, "fault_race_lost"));
        Assert.Equal(1, Delta(before, space, "anon_fault"));
        Assert.Equal(1, Delta(before, space, "nr_anon_pages"));
        stopped.Store(first, (byte)0x5A);
        Assert.Equal(0x5A, racer.Load<byte>(first));
        stopped.Dispose();
        racer.Dispose();
        Assert.Equal(framesBaseline + 1, space.FramesInUse);
    }

    private static AddressSpace NewSpace(FaultPath path, bool mapZeroPageOnRead) => new(new FaultlineOptions
    {
        FaultPath = path,
        PhysicalMemoryBytes = 64 << 20,
        MapZeroPageOnRead = mapZeroPageOnRead,
    });

    // One read-write VMA: an anchor page written first (its anon_vma and page tables exist before the reads, so the
    // speculative path handles them itself), then the pages the test reads; returns the first of those.
    private static ulong MapWithWrittenAnchor(AddressSpace space)
    {
        ulong anchor = MapFixed(space, Base, (1 + Pages) * Page);
        WithCpu(space, cpu => cpu.Store(anchor, (byte)0xA5));
        return anchor + Page;
    }

    // A Cpu, plus an idle second one on the speculative path (it runs only with mm_users > 1); both detach at the end,
    // draining their frame caches, so FramesInUse counts only mapped frames and page tables.
    private static void WithCpu(AddressSpace space, Action<Cpu> body)
    {
        using Cpu cpu = space.AttachCpu();
        using Cpu? idle = space.FaultPath == FaultPath.Speculative ? space.AttachCpu() : null;
        body(cpu);
    }

    private static void ReadEach(Cpu cpu, ulong first) =>
        Assert.All(PageAddresses(first), page => Assert.Equal(0, cpu.Load<byte>(page + 7)));

    private static void WriteEach(Cpu cpu, ulong first)
    {
        foreach (ulong page in PageAddresses(first))
        {
            cpu.Store(page + 7, PageByte(page));
        }
    }

    private static void AssertWritten(Cpu cpu, ulong first) =>
        Assert.All(PageAddresses(first), page => Assert.Equal(PageByte(page), cpu.Load<byte>(page + 7)));

    private static byte PageByte(ulong page) => (byte)(1 + (page >> PageGeometry.PageShift) % 251);

    private static IEnumerable<ulong> PageAddresses(ulong first) =>
        Enumerable.Range(0, Pages).Select(i => first + (ulong)i * Page);

    // The smaps entry of the one VMA at Base, read with the same parser as the host's.
    private static SmapsEntry OurSmaps(AddressSpace space) =>
        HostSmaps.Parse(Encoding.ASCII.GetBytes(space.GetSmaps()), Base, Base + 1).Single();
}
