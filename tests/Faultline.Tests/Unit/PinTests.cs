using Faultline.Physical;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// <c>pin_user_pages</c> (<see cref="AddressSpace.Pin"/>): pages are faulted in (a write pin breaks copy-on-write), held
/// with a pin and a reference, and outlive their mappings until unpinned; fork copies a pinned private page for the
/// child (<c>copy_present_pte</c> → <c>copy_present_page</c>); a range that cannot be pinned whole pins nothing.
/// </summary>
public sealed class PinTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;
    private const int Pages = 8;

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    private static AddressSpace NewSpace(FaultPath path = FaultPath.VmaLock, bool zeroPage = false) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20, MapZeroPageOnRead = zeroPage, PoisonFreedFrames = true });

    private static long FrameAt(AddressSpace space, ulong address) =>
        Paging.Pte.Frame(space.Descriptor.PageTable.Lookup(address, space.Descriptor.Probes));

    [Theory]
    [MemberData(nameof(Paths))]
    public void AWritePinFaultsThePagesInAndSharesThemWithTheGuest(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        ulong a = MapFixed(space, Base, Pages * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        cpu.Store(a + 8, 5L);

        using PinnedPages pinned = space.Pin(a + 8, Pages * Page - 16, write: true);
        Assert.Equal(a, pinned.Address);
        Assert.Equal(Pages, pinned.PageCount);
        Assert.Equal(Pages, space.ResidentPages);
        Assert.Equal(5L, BitConverter.ToInt64(pinned.GetPage(0)[8..]));
        for (int i = 0; i < Pages; i++)
        {
            Assert.True(space.Descriptor.Memory.IsPinned(pinned.FrameOf(i)));
            Assert.Equal(FrameAt(space, a + (ulong)i * Page), pinned.FrameOf(i));
            BitConverter.TryWriteBytes(pinned.GetWritablePage(i)[16..], 100L + i);
            Assert.Equal(100L + i, cpu.Load<long>(a + (ulong)i * Page + 16));
        }
        cpu.Store(a + 3 * Page, 77L);
        Assert.Equal(77L, BitConverter.ToInt64(pinned.GetPage(3)));
    }

    [Fact]
    public void AWritePinBreaksCopyOnWriteFirst()
    {
        using AddressSpace parent = NewSpace();
        ulong a = MapFixed(parent, Base, Page);
        using Cpu parentCpu = parent.AttachCpu();
        parentCpu.Store(a, 1L);
        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();
        long shared = FrameAt(child, a);
        Dictionary<string, long> before = Counters(child);

        using (PinnedPages pinned = child.Pin(a, Page, write: true))
        {
            Assert.Equal(1L, Delta(before, child, "cow_fault"));
            Assert.NotEqual(shared, pinned.FrameOf(0));
            Assert.Equal(FrameAt(child, a), pinned.FrameOf(0));
            BitConverter.TryWriteBytes(pinned.GetWritablePage(0), 2L);
        }
        Assert.Equal(2L, childCpu.Load<long>(a));
        Assert.Equal(1L, parentCpu.Load<long>(a));
    }

    [Fact]
    public void UnmapOfAPinnedRangeKeepsTheFramesUntilUnpin()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, Pages * Page);
        using Cpu cpu = space.AttachCpu();
        for (int i = 0; i < Pages; i++)
        {
            cpu.Store(a + (ulong)i * Page, 10L + i);
        }
        PinnedPages pinned = space.Pin(a, Pages * Page, write: false);
        PhysicalMemory memory = space.Descriptor.Memory;

        space.Unmap(a, Pages * Page);
        Assert.Equal(0L, space.ResidentPages);
        for (int i = 0; i < Pages; i++)
        {
            // The pin's reference alone holds the frame now.
            Assert.Equal(10L + i, BitConverter.ToInt64(pinned.GetPage(i)));
            Assert.True(memory.IsPinned(pinned.FrameOf(i)));
            Assert.Equal(1, memory.Info(pinned.FrameOf(i)).RefCount);
            Assert.Equal(FrameKind.Anonymous, memory.Info(pinned.FrameOf(i)).Kind);
        }
        int framesPinned = space.FramesInUse;
        pinned.Dispose();
        Assert.Equal(framesPinned - Pages, space.FramesInUse);
        for (int i = 0; i < Pages; i++)
        {
            Assert.False(memory.IsPinned(pinned.FrameOf(i)));
            Assert.Equal(FrameKind.Free, memory.Info(pinned.FrameOf(i)).Kind);
        }
        Assert.Throws<ObjectDisposedException>(() => pinned.GetPage(0).Length);
    }

    [Fact]
    public void DontNeedOfAPinnedPageDropsTheMappingNotTheFrame()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, Page);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 9L);
        using PinnedPages pinned = space.Pin(a, Page, write: true);

        space.Advise(a, Page, Advice.DontNeed);
        Assert.Equal(0L, cpu.Load<long>(a));
        Assert.NotEqual(pinned.FrameOf(0), FrameAt(space, a));
        Assert.Equal(9L, BitConverter.ToInt64(pinned.GetPage(0)));
        Assert.True(space.Descriptor.Memory.IsPinned(pinned.FrameOf(0)));
        Assert.Equal(0, space.Descriptor.Memory.Info(pinned.FrameOf(0)).MapCount);
    }

    [Fact]
    public void ForkCopiesAPinnedPrivatePageForTheChild()
    {
        using AddressSpace parent = NewSpace();
        ulong a = MapFixed(parent, Base, 2 * Page);
        using Cpu parentCpu = parent.AttachCpu();
        parentCpu.Store(a, 1L);
        parentCpu.Store(a + Page, 2L);
        using PinnedPages pinned = parent.Pin(a, Page, write: true);

        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();
        // copy_present_page: the child has its own copy, the parent keeps the pinned frame mapped and writable.
        Assert.NotEqual(pinned.FrameOf(0), FrameAt(child, a));
        Assert.Equal(pinned.FrameOf(0), FrameAt(parent, a));
        Assert.Equal(FrameAt(parent, a + Page), FrameAt(child, a + Page));
        Assert.Equal(2L, child.ResidentPages);
        Dictionary<string, long> before = Counters(parent);
        Dictionary<string, long> childBefore = Counters(child);
        parentCpu.Store(a, 3L);
        Assert.Equal(0L, Delta(before, parent, "cow_fault") + Delta(before, parent, "cow_reuse"));
        Assert.Equal(3L, BitConverter.ToInt64(pinned.GetPage(0)));
        Assert.Equal(1L, childCpu.Load<long>(a));
        childCpu.Store(a, 4L);
        Assert.Equal(0L, Delta(childBefore, child, "cow_fault"));
        Assert.Equal(3L, parentCpu.Load<long>(a));
        Assert.Single(parent.GetPageMappings(a));
        Assert.Single(child.GetPageMappings(a));
    }

    [Fact]
    public void ARangeWithAHoleOrNoAccessPinsNothing()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, 4 * Page);
        space.Protect(a + 2 * Page, Page, Protection.None);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1L);
        cpu.Store(a + Page, 1L);
        ulong readOnly = MapFixed(space, Base + 0x10_0000, Page, Protection.Read);

        Assert.Equal(Errno.EFAULT, space.TryPin(a, 4 * Page, write: false, out PinnedPages? pinned));
        Assert.Null(pinned);
        Assert.Equal(Errno.EFAULT, space.TryPin(a + 3 * Page, 2 * Page, write: true, out pinned));
        Assert.Equal(Errno.EFAULT, space.TryPin(Base + 0x80_0000, Page, write: false, out pinned));
        Assert.Equal(Errno.EFAULT, space.TryPin(readOnly, Page, write: true, out pinned));
        Assert.Equal(Errno.EINVAL, space.TryPin(a, 0, write: false, out pinned));
        Assert.Null(pinned);
        Assert.False(space.Descriptor.Memory.IsPinned(FrameAt(space, a)));
        Assert.False(space.Descriptor.Memory.IsPinned(FrameAt(space, a + Page)));
        Assert.Equal(1, space.Descriptor.Memory.Users);
    }

    [Fact]
    public void UnpinAfterTheAddressSpaceIsDisposedIsSafeAndIdempotent()
    {
        var space = NewSpace();
        PhysicalMemory memory = space.Descriptor.Memory;
        ulong a = MapFixed(space, Base, 2 * Page);
        PinnedPages pinned;
        using (Cpu cpu = space.AttachCpu())
        {
            cpu.Store(a + Page, 6L);
            pinned = space.Pin(a, 2 * Page, write: true);
        }
        space.Dispose();
        Assert.Equal(1, memory.Users);
        Assert.Equal(6L, BitConverter.ToInt64(pinned.GetPage(1)));
        pinned.Dispose();
        pinned.Dispose();
        Assert.Equal(0, memory.Users);
        Assert.Throws<ObjectDisposedException>(() => space.Pin(a, Page, write: false));
    }

    [Fact]
    public void AReadPinOfTheZeroPageCountsNoPinAndIsReadOnly()
    {
        using AddressSpace space = NewSpace(zeroPage: true);
        ulong a = MapFixed(space, Base, Page);
        using PinnedPages pinned = space.Pin(a, Page, write: false);
        Assert.Equal(PhysicalMemory.ZeroFrame, pinned.FrameOf(0));
        Assert.False(pinned.IsWritable);
        Assert.Throws<InvalidOperationException>(() => pinned.GetWritablePage(0).Length);
        Assert.Equal(-1, pinned.GetPage(0).IndexOfAnyExcept((byte)0));
    }
}
