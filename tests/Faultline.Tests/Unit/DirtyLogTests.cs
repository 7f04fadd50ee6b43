using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// The dirty log on each fault path: a get-and-clear reports exactly the pages written since the previous one, and
/// re-arms them so that the next write to each faults once (reusing the page) and is reported by the next call.
/// </summary>
public sealed class DirtyLogTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;
    private const int Pages = 256;

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    private static AddressSpace NewSpace(FaultPath path) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 32 << 20 });

    private static int[] Written(AddressSpace space, ulong address, int pages, out long count)
    {
        var bitmap = new ulong[(pages + 63) / 64];
        count = space.GetAndClearDirtyLog(address, (ulong)pages * Page, bitmap);
        var result = new List<int>();
        for (int i = 0; i < pages; i++)
        {
            if ((bitmap[i / 64] & (1UL << (i % 64))) != 0)
            {
                result.Add(i);
            }
        }
        Assert.Equal(count, result.Count);
        return [.. result];
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void EachCallReportsThePagesWrittenSinceThePreviousOne(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        MapFixed(space, Base, Pages * Page);
        cpu.Store(Base + 3 * Page, 3L);
        other.Store(Base + 64 * Page, 64L);
        cpu.Store(Base + 200 * Page, 200L);
        // A read maps the zero page (or a clean frame): nothing was written there.
        _ = cpu.Load<long>(Base + 5 * Page);

        Assert.Equal([3, 64, 200], Written(space, Base, Pages, out _));
        Assert.Empty(Written(space, Base, Pages, out _));

        var before = Counters(space);
        cpu.Store(Base + 64 * Page, 65L);
        cpu.Store(Base + 64 * Page + 8, 66L);
        other.Store(Base + 100 * Page, 100L);
        Assert.Equal(1, Delta(before, space, VmCounters.CowReuse));
        Assert.Equal(0, Delta(before, space, VmCounters.CowFault));

        Assert.Equal([64, 100], Written(space, Base, Pages, out long count));
        Assert.Equal(2, count);
        Assert.Equal(65L, other.Load<long>(Base + 64 * Page));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void SharedMemoryPagesMappedByAReadAreNotWritten(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        space.Map(Base, 8 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);
        _ = cpu.Load<long>(Base);
        cpu.Store(Base + 2 * Page, 2L);
        Assert.Equal([2], Written(space, Base, 8, out _));

        // The page mapped writable and clean by the read is armed now too: its first write faults and is reported.
        var before = Counters(space);
        cpu.Store(Base, 1L);
        Assert.Equal(1, Delta(before, space, VmCounters.WriteProtectFault));
        Assert.Equal([0], Written(space, Base, 8, out _));
    }

    [Fact]
    public void APartOfARangeAndItsHolesAreReportedByPageIndex()
    {
        using AddressSpace space = NewSpace(FaultPath.MmapLock);
        using Cpu cpu = space.AttachCpu();
        MapFixed(space, Base, 4 * Page);
        MapFixed(space, Base + 8 * Page, 4 * Page);
        cpu.Store(Base + 3 * Page, 1L);
        cpu.Store(Base + 9 * Page, 1L);

        // The range starts before the first mapping and the bitmap's bit 0 is its first page.
        Assert.Equal([4, 10], Written(space, Base - Page, 70, out _));
    }

    [Fact]
    public void BadArgumentsChangeNothing()
    {
        using AddressSpace space = NewSpace(FaultPath.MmapLock);
        using Cpu cpu = space.AttachCpu();
        MapFixed(space, Base, 128 * Page);
        cpu.Store(Base, 1L);
        Assert.Equal(Errno.EINVAL, space.TryGetAndClearDirtyLog(Base + 1, Page, new ulong[1], out _));
        Assert.Equal(Errno.EFAULT, space.TryGetAndClearDirtyLog(Base, 128 * Page, new ulong[1], out _));
        Assert.Equal(Errno.EINVAL, space.TryGetAndClearDirtyLog(ulong.MaxValue - Page + 1, 2 * Page, new ulong[1], out _));
        Assert.Equal([0], Written(space, Base, 128, out _));
    }

    [Fact]
    public void ForkLeavesTheChildUntrackedAndMprotectKeepsArmedPagesReadOnly()
    {
        using AddressSpace space = NewSpace(FaultPath.MmapLock);
        using Cpu cpu = space.AttachCpu();
        MapFixed(space, Base, 2 * Page);
        cpu.Store(Base, 1L);
        cpu.Store(Base + Page, 1L);
        Written(space, Base, 2, out _);
        space.Protect(Base, 2 * Page, Protection.Read);
        space.Protect(Base, 2 * Page, Protection.ReadWrite);
        var before = Counters(space);
        cpu.Store(Base, 2L);
        Assert.Equal(1, Delta(before, space, VmCounters.WriteProtectFault));
        Assert.Equal([0], Written(space, Base, 2, out _));

        using AddressSpace child = space.Fork();
        var entries = new ulong[2];
        child.ReadPageMap(Base, entries);
        Assert.All(entries, e => Assert.Equal(0UL, e & (1UL << 57)));
        space.ReadPageMap(Base, entries);
        Assert.All(entries, e => Assert.NotEqual(0UL, e & (1UL << 57)));
    }
}
