using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// A read pin of an anonymous page shared copy-on-write after fork unshares it first (<c>FOLL_PIN</c> without
/// <c>FOLL_WRITE</c> → <c>FAULT_FLAG_UNSHARE</c>): the parent's mapping gets an exclusive copy, mapped read-only, so its
/// later writes reuse the pinned page in place and the pin sees them, while the child keeps the old page.
/// </summary>
public sealed class PinUnshareTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static AddressSpace NewSpace(FaultPath path) => new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });

    [Theory]
    [MemberData(nameof(Paths))]
    public void AReadPinAfterForkUnsharesSoTheParentsLaterWritesReachThePinnedPage(FaultPath path)
    {
        using AddressSpace parent = NewSpace(path);
        parent.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = parent.AttachCpu();
        cpu.Store(Base, 1L);
        using AddressSpace child = parent.Fork();
        long cowBefore = parent.GetCounters()[VmCounters.CowFault];

        using PinnedPages pinned = parent.Pin(Base, Page, write: false);
        // The unshare copied the page for the parent: the two spaces no longer share it.
        Assert.Equal(cowBefore + 1, parent.GetCounters()[VmCounters.CowFault]);
        Assert.Single(parent.GetPageMappings(Base));
        Assert.Equal(1L, BitConverter.ToInt64(pinned.GetPage(0)));

        // The copy is exclusive: the write reuses it in place (no second copy), and the pin sees it.
        cpu.Store(Base, 2L);
        Assert.Equal(cowBefore + 1, parent.GetCounters()[VmCounters.CowFault]);
        Assert.Equal(2L, BitConverter.ToInt64(pinned.GetPage(0)));

        using Cpu childCpu = child.AttachCpu();
        Assert.Equal(1L, childCpu.Load<long>(Base));
        childCpu.Store(Base, 3L);
        Assert.Equal(2L, BitConverter.ToInt64(pinned.GetPage(0)));
        Assert.Equal(2L, cpu.Load<long>(Base));
    }

    [Fact]
    public void AReadPinOfAnExclusivePageCopiesNothing()
    {
        using AddressSpace space = NewSpace(FaultPath.VmaLock);
        space.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(Base, 4L);
        long cowBefore = space.GetCounters()[VmCounters.CowFault];
        using PinnedPages pinned = space.Pin(Base, Page, write: false);
        cpu.Store(Base, 5L);
        Assert.Equal(cowBefore, space.GetCounters()[VmCounters.CowFault]);
        Assert.Equal(5L, BitConverter.ToInt64(pinned.GetPage(0)));
    }

    [Fact]
    public void AReadPinAfterTheChildWentAwayMarksThePageExclusiveWithoutACopy()
    {
        using AddressSpace parent = NewSpace(FaultPath.MmapLock);
        parent.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = parent.AttachCpu();
        cpu.Store(Base, 6L);
        parent.Fork().Dispose();
        long cowBefore = parent.GetCounters()[VmCounters.CowFault];
        using PinnedPages pinned = parent.Pin(Base, Page, write: false);
        cpu.Store(Base, 7L);
        Assert.Equal(cowBefore, parent.GetCounters()[VmCounters.CowFault]);
        Assert.Equal(7L, BitConverter.ToInt64(pinned.GetPage(0)));
    }
}
