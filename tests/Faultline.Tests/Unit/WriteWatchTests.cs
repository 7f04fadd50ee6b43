using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Write watches on each fault path: the first write to an armed page calls the callback once, before the store
/// lands, with the faulting address and Cpu; later writes run free until the watch is re-armed; the zero page, a page
/// shared by fork and shared memory are watched alike; a disposed watch is silent.
/// </summary>
public sealed class WriteWatchTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    private static AddressSpace NewSpace(FaultPath path) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 32 << 20 });

    [Theory]
    [MemberData(nameof(Paths))]
    public void TheFirstWriteCallsTheCallbackBeforeTheStoreLands(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        using Cpu cpu = space.AttachCpu();
        using Cpu observer = space.AttachCpu();
        MapFixed(space, Base, 4 * Page);
        cpu.Store(Base + Page, 11L);
        var seen = new List<(ulong Address, Cpu Cpu, long Value)>();
        using WriteWatch watch = space.WatchWrites(Base, 4 * Page, (address, writer) =>
            seen.Add((address, writer, observer.Load<long>(Base + Page))));

        cpu.Store(Base + Page + 8, 12L);
        cpu.Store(Base + Page, 13L);

        Assert.Equal([(Base + Page + 8, cpu, 11L)], seen);
        Assert.Equal(12L, observer.Load<long>(Base + Page + 8));

        watch.Rearm(Base + Page, Page);
        cpu.Store(Base + Page, 14L);
        Assert.Equal(2, seen.Count);
        Assert.Equal((Base + Page, cpu, 13L), seen[1]);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void TheZeroPageAForkSharedPageAndSharedMemoryAreWatched(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        MapFixed(space, Base, 2 * Page);
        space.Map(Base + 4 * Page, Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);
        _ = cpu.Load<long>(Base);
        cpu.Store(Base + Page, 1L);
        cpu.Store(Base + 4 * Page, 1L);
        using AddressSpace child = space.Fork();
        var seen = new List<ulong>();
        using WriteWatch watch = space.WatchWrites(Base, 5 * Page, (address, _) => seen.Add(address));

        cpu.Store(Base, 2L);
        cpu.Store(Base + Page, 2L);
        cpu.Store(Base + 4 * Page, 2L);

        Assert.Equal([Base, Base + Page, Base + 4 * Page], seen);
        using Cpu childCpu = child.AttachCpu();
        Assert.Equal(1L, childCpu.Load<long>(Base + Page));
        Assert.Equal(2L, childCpu.Load<long>(Base + 4 * Page));
    }

    [Fact]
    public void ADisposedWatchIsSilentAndWatchesMayNotOverlap()
    {
        using AddressSpace space = NewSpace(FaultPath.MmapLock);
        using Cpu cpu = space.AttachCpu();
        MapFixed(space, Base, 4 * Page);
        cpu.Store(Base, 1L);
        int calls = 0;
        WriteWatch watch = space.WatchWrites(Base, 2 * Page, (_, _) => calls++);
        Assert.Throws<ArgumentException>(() => space.WatchWrites(Base + Page, 2 * Page, (_, _) => calls++));
        Assert.Throws<ArgumentException>(() => space.WatchWrites(Base + 1, Page, (_, _) => calls++));
        watch.Dispose();
        Assert.Throws<ObjectDisposedException>(() => watch.Rearm());

        cpu.Store(Base, 2L);
        Assert.Equal(0, calls);
        using WriteWatch again = space.WatchWrites(Base + Page, 2 * Page, (_, _) => calls++);
        Assert.Throws<ArgumentOutOfRangeException>(() => again.Rearm(Base, Page));
    }

    [Fact]
    public void AWatchDisposedAfterItsAddressSpaceOnlyUnregisters()
    {
        var space = NewSpace(FaultPath.MmapLock);
        MapFixed(space, Base, Page);
        WriteWatch watch = space.WatchWrites(Base, Page, (_, _) => { });
        space.Dispose();
        watch.Dispose();
        Assert.Throws<ObjectDisposedException>(() => watch.Rearm());
    }

    [Fact]
    public void ACallbackThatRearmsItsPageIsCalledAgainByTheRetriedStore()
    {
        using AddressSpace space = NewSpace(FaultPath.MmapLock);
        using Cpu cpu = space.AttachCpu();
        MapFixed(space, Base, Page);
        cpu.Store(Base, 1L);
        int calls = 0;
        WriteWatch? self = null;
        using WriteWatch watch = space.WatchWrites(Base, Page, (_, _) =>
        {
            if (++calls == 1)
            {
                self!.Rearm();
            }
        });
        self = watch;

        // Re-armed from the callback before the store was retried: the retry faults and notifies again, and lands
        // once a callback leaves the page disarmed.
        cpu.Store(Base, 2L);
        Assert.Equal(2, calls);
        Assert.Equal(2L, cpu.Load<long>(Base));
    }
}
