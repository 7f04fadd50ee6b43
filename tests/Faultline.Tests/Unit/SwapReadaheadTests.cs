using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// VMA-based swap readahead through the public surface: a sequential sweep over swapped-out pages reads their
/// neighbours into the swap cache (<c>swap_ra</c>) and later faults find them there (<c>swap_ra_hit</c>) with fewer
/// reads of the area than pages; random access keeps the window closed; <c>PageCluster</c> 0 reads one page a fault;
/// contents survive and every slot comes back after unmap.
/// </summary>
public sealed class SwapReadaheadTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;
    private const int Pages = 256;

    public static TheoryData<FaultPath, SwapAreaKind> PathsAndAreas
    {
        get
        {
            var data = new TheoryData<FaultPath, SwapAreaKind>();
            foreach (FaultPath path in new[] { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock })
            {
                data.Add(path, SwapAreaKind.Compressed);
                data.Add(path, SwapAreaKind.File);
            }
            return data;
        }
    }

    private static AddressSpace NewSpace(FaultPath path, SwapAreaKind kind = SwapAreaKind.Compressed, int pageCluster = 3) =>
        new(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = 16 << 20,
            PoisonFreedFrames = true,
            Swap = new SwapOptions { Kind = kind, SizeBytes = 16 << 20, BackgroundReclaim = false, PageCluster = pageCluster },
        });

    private static long Stamp(ulong address) => (long)(address * 2654435761UL) ^ 0x3C3C;

    // Pages stamped, then all paged out: every PTE of the range holds a swap entry.
    private static ulong SwappedOutRange(AddressSpace space, Cpu cpu)
    {
        ulong a = space.Map(Base, Pages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        for (ulong i = 0; i < Pages; i++)
        {
            cpu.Store(a + i * Page, Stamp(a + i * Page));
        }
        space.Advise(a, Pages * Page, Advice.PageOut);
        Assert.Equal(0, space.ResidentPages);
        return a;
    }

    [Theory]
    [MemberData(nameof(PathsAndAreas))]
    public void ASequentialSweepReadsAheadAndFindsThePagesCached(FaultPath path, SwapAreaKind kind)
    {
        using AddressSpace space = NewSpace(path, kind);
        using Cpu cpu = space.AttachCpu();
        ulong a = SwappedOutRange(space, cpu);
        long majorBefore = space.GetCounters()[VmCounters.MajorFault];

        for (ulong i = 0; i < Pages; i++)
        {
            Assert.Equal(Stamp(a + i * Page), cpu.Load<long>(a + i * Page));
        }

        IReadOnlyDictionary<string, long> counters = space.GetCounters();
        long major = counters[VmCounters.MajorFault] - majorBefore;
        // Each page came in once: by its own fault or ahead of it.
        Assert.Equal(Pages, counters[VmCounters.SwapIn]);
        Assert.True(counters[VmCounters.SwapReadahead] >= Pages / 2, $"swap_ra {counters[VmCounters.SwapReadahead]}");
        Assert.True(counters[VmCounters.SwapReadaheadHit] >= Pages / 2, $"swap_ra_hit {counters[VmCounters.SwapReadaheadHit]}");
        Assert.True(major <= Pages / 4, $"{major} reads of the area for {Pages} pages");
        Assert.Equal(counters[VmCounters.SwapReadahead] + major, Pages);

        space.Unmap(a, Pages * Page);
        Assert.Equal(space.SwapTotalBytes, space.SwapFreeBytes);
        Assert.Equal(0, space.SwapCachedBytes);
    }

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.VmaLock)]
    public void PageClusterZeroReadsOnlyTheFaultingPage(FaultPath path)
    {
        using AddressSpace space = NewSpace(path, pageCluster: 0);
        using Cpu cpu = space.AttachCpu();
        ulong a = SwappedOutRange(space, cpu);

        for (ulong i = 0; i < Pages; i++)
        {
            Assert.Equal(Stamp(a + i * Page), cpu.Load<long>(a + i * Page));
        }

        Assert.Equal(0, space.GetCounters()[VmCounters.SwapReadahead]);
        Assert.Equal(Pages, space.GetCounters()[VmCounters.MajorFault]);
    }

    [Fact]
    public void RandomAccessKeepsTheWindowClosed()
    {
        using AddressSpace space = NewSpace(FaultPath.MmapLock);
        using Cpu cpu = space.AttachCpu();
        ulong a = SwappedOutRange(space, cpu);
        // A stride of 17 pages modulo the range: never next to the previous fault, never inside the last window.
        for (ulong i = 0, page = 0; i < Pages; i++, page = (page + 17) % Pages)
        {
            Assert.Equal(Stamp(a + page * Page), cpu.Load<long>(a + page * Page));
        }

        Assert.Equal(0, space.GetCounters()[VmCounters.SwapReadahead]);
        space.Unmap(a, Pages * Page);
        Assert.Equal(space.SwapTotalBytes, space.SwapFreeBytes);
    }

    [Fact]
    public void PagesReadAheadAndNeverUsedGiveTheirSlotsBackOnUnmap()
    {
        using AddressSpace space = NewSpace(FaultPath.MmapLock);
        using Cpu cpu = space.AttachCpu();
        ulong a = SwappedOutRange(space, cpu);
        // Two adjacent faults open the window; the pages read ahead of the third are never touched.
        for (ulong i = 0; i < 8; i++)
        {
            Assert.Equal(Stamp(a + i * Page), cpu.Load<long>(a + i * Page));
        }
        Assert.True(space.SwapCachedBytes > 0, "pages read ahead sit in the swap cache");

        space.Unmap(a, Pages * Page);

        Assert.Equal(space.SwapTotalBytes, space.SwapFreeBytes);
        Assert.Equal(0, space.SwapCachedBytes);
    }

    [Fact]
    public void APageClusterOutsideItsRangeIsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new AddressSpace(new FaultlineOptions
        {
            Swap = new SwapOptions { PageCluster = SwapOptions.MaxPageCluster + 1 },
        }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AddressSpace(new FaultlineOptions
        {
            Swap = new SwapOptions { PageCluster = -1 },
        }));
    }
}
