using Faultline.Paging;
using Faultline.Physical;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Faults on a backed VMA (<c>do_fault</c>: <c>do_read_fault</c>, <c>do_cow_fault</c>, <c>do_shared_fault</c>, and
/// <c>do_wp_page</c> on a backing's page) on all three fault paths, and the control plane's notifications to the backing.
/// </summary>
public class BackingFaultTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;
    private const ulong FirstOffset = 2;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static AddressSpace NewSpace(FaultPath path) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });

    // Maps pages [FirstOffset, FirstOffset + pages) of the backing at Base.
    private static ulong MapBacked(AddressSpace space, InMemoryBacking backing, MapFlags type, Protection protection = Protection.ReadWrite,
        ulong pages = 4) =>
        space.MapBacking(Base, pages * Page, protection, type | MapFlags.Fixed, backing, FirstOffset);

    private static long FrameAt(AddressSpace space, ulong address) =>
        Pte.Frame(space.Descriptor.PageTable.Lookup(address, space.Descriptor.Probes));

    private static ref FrameInfo Info(AddressSpace space, long pfn) => ref space.Descriptor.Memory.Info(pfn);

    [Theory]
    [MemberData(nameof(Paths))]
    public void ReadFaultMapsTheBackingsFrameReadOnly(FaultPath path)
    {
        using var space = NewSpace(path);
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8);
        ulong a = MapBacked(space, backing, MapFlags.Private);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu(); // a second user: the speculative path skips single-user spaces
        var before = Counters(space);

        Assert.Equal(InMemoryBacking.PatternByte(FirstOffset + 1), cpu.Load<byte>(a + Page + 5));

        long pfn = backing.FrameOf(FirstOffset + 1);
        Assert.Equal(pfn, FrameAt(space, a + Page));
        Assert.Equal(2, Info(space, pfn).RefCount);
        Assert.Equal(1, Info(space, pfn).MapCount);
        Assert.Equal(1, space.CountResidentPages(a, a + 4 * Page));
        Assert.Equal(0, space.ResidentPages);
        Assert.Equal(path == FaultPath.Speculative ? 1 : 0, Delta(before, space, "speculative_pgfault"));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void PrivateWriteFaultCopiesAndLeavesTheBackingsPage(FaultPath path)
    {
        using var space = NewSpace(path);
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8);
        ulong a = MapBacked(space, backing, MapFlags.Private);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu(); // a second user: the speculative path skips single-user spaces

        cpu.Store(a, (byte)0x5A);

        long source = backing.FrameOf(FirstOffset);
        long copy = FrameAt(space, a);
        Assert.NotEqual(source, copy);
        Assert.Equal(0x5A, cpu.Load<byte>(a));
        Assert.Equal(InMemoryBacking.PatternByte(FirstOffset), cpu.Load<byte>(a + 1));
        unsafe
        {
            Assert.Equal(InMemoryBacking.PatternByte(FirstOffset), *space.Descriptor.Memory.FrameAddress(source));
        }
        Assert.Equal(1, Info(space, source).RefCount);
        Assert.Equal(0, Info(space, source).MapCount);
        Assert.Equal(FrameKind.Anonymous, Info(space, copy).Kind);
        Assert.True(space.Descriptor.Memory.HasFlags(copy, FrameFlags.AnonExclusive));
        Assert.Equal(1, space.ResidentPages);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void WriteAfterReadCopiesTheMappedPageThroughAGracePeriod(FaultPath path)
    {
        using var space = NewSpace(path);
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8);
        ulong a = MapBacked(space, backing, MapFlags.Private);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu(); // a second user: the speculative path skips single-user spaces
        long source = backing.FrameOf(FirstOffset);
        Assert.Equal(InMemoryBacking.PatternByte(FirstOffset), cpu.Load<byte>(a));
        var before = Counters(space);

        cpu.Store(a, (byte)0x77);

        Assert.NotEqual(source, FrameAt(space, a));
        Assert.Equal(0x77, cpu.Load<byte>(a));
        Assert.Equal(InMemoryBacking.PatternByte(FirstOffset), cpu.Load<byte>(a + 1));
        unsafe
        {
            Assert.Equal(InMemoryBacking.PatternByte(FirstOffset), *space.Descriptor.Memory.FrameAddress(source));
        }
        Assert.Equal(1, Info(space, source).RefCount);
        Assert.Equal(0, Info(space, source).MapCount);
        // Speculatively the first copy stops at anon_vma_prepare (RETRY) and the classic path faults again.
        Assert.Equal(path == FaultPath.Speculative ? 2 : 1, Delta(before, space, "wp_fault"));
        Assert.True(Delta(before, space, "grace_period") >= 1);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void SharedWriteChangesTheBackingsPageAndMarksItDirty(FaultPath path)
    {
        using var space = NewSpace(path);
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8);
        ulong a = MapBacked(space, backing, MapFlags.Shared);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu(); // a second user: the speculative path skips single-user spaces
        PhysicalMemory memory = space.Descriptor.Memory;

        cpu.Store(a, (byte)0x31);
        Assert.Equal(InMemoryBacking.PatternByte(FirstOffset + 1), cpu.Load<byte>(a + Page));
        cpu.Store(a + Page, (byte)0x32);

        foreach ((ulong address, ulong offset, byte value) in new[] { (a, FirstOffset, (byte)0x31), (a + Page, FirstOffset + 1, (byte)0x32) })
        {
            long pfn = backing.FrameOf(offset);
            Assert.Equal(pfn, FrameAt(space, address));
            Assert.True(memory.HasFlags(pfn, FrameFlags.Dirty));
            Assert.Equal(2, Info(space, pfn).RefCount);
            Assert.Equal(1, Info(space, pfn).MapCount);
            unsafe
            {
                Assert.Equal(value, *memory.FrameAddress(pfn));
            }
        }
        Assert.False(memory.HasFlags(backing.FrameOf(FirstOffset + 2), FrameFlags.Dirty));
        Assert.Equal(0, space.ResidentPages);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void FaultPastTheEndOfTheBackingIsSigBus(FaultPath path)
    {
        using var space = NewSpace(path);
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8) { EndOfFile = FirstOffset + 2 };
        ulong a = MapBacked(space, backing, MapFlags.Private);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu(); // a second user: the speculative path skips single-user spaces

        Assert.Equal(AccessOutcome.Ok, cpu.TryLoad(a + Page, out byte _));
        Assert.Equal(AccessOutcome.BusError, cpu.TryLoad(a + 2 * Page, out byte _));
        Assert.Equal(AccessOutcome.BusError, cpu.TryStore(a + 3 * Page, (byte)1));
        Assert.False(HasPte(space, a + 2 * Page));
    }

    [Fact]
    public void SpeculativeRetryFromTheBackingFallsBackToTheClassicPath()
    {
        using var space = NewSpace(FaultPath.Speculative);
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8) { RetryWhenSpeculative = true };
        ulong a = MapBacked(space, backing, MapFlags.Private);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu(); // a second user: the speculative path skips single-user spaces
        var before = Counters(space);

        Assert.Equal(InMemoryBacking.PatternByte(FirstOffset), cpu.Load<byte>(a));

        Assert.Equal(1, backing.SpeculativeFaults);
        Assert.Equal(2, backing.Faults);
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(1, Delta(before, space, "mmap_lock_fault"));
        Assert.Equal(0, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(2, Info(space, backing.FrameOf(FirstOffset)).RefCount);
    }

    [Fact]
    public void BackingThatIsNotSpeculativeSafeIsNeverAskedSpeculatively()
    {
        using var space = NewSpace(FaultPath.Speculative);
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8, speculativeSafe: false);
        ulong a = MapBacked(space, backing, MapFlags.Private);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu(); // a second user: the speculative path skips single-user spaces
        var before = Counters(space);

        Assert.Equal(InMemoryBacking.PatternByte(FirstOffset), cpu.Load<byte>(a));

        Assert.Equal(0, backing.SpeculativeFaults);
        Assert.Equal(1, Delta(before, space, "spf_vma_notsup"));
        Assert.Equal(1, Delta(before, space, "mmap_lock_fault"));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void UnmapDropsTheMappingButTheBackingKeepsItsFrame(FaultPath path)
    {
        using var space = NewSpace(path);
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8);
        ulong a = MapBacked(space, backing, MapFlags.Shared);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu(); // a second user: the speculative path skips single-user spaces
        cpu.Store(a, (byte)0x44);
        long pfn = backing.FrameOf(FirstOffset);
        int framesInUse = space.FramesInUse;

        space.Unmap(a, 4 * Page);

        Assert.Equal(1, Info(space, pfn).RefCount);
        Assert.Equal(0, Info(space, pfn).MapCount);
        Assert.Equal(FrameKind.PageCache, Info(space, pfn).Kind);
        unsafe
        {
            Assert.Equal(0x44, *space.Descriptor.Memory.FrameAddress(pfn));
        }
        Assert.True(space.FramesInUse <= framesInUse);
        Assert.Equal(0, backing.OpenCount);
    }

    [Fact]
    public void NotificationsFollowMapSplitMergeAndUnmap()
    {
        using var space = NewSpace(FaultPath.MmapLock);
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8);
        ulong a = MapBacked(space, backing, MapFlags.Private);
        Assert.Equal([("open", FirstOffset, 4UL)], backing.Notifications);

        space.Protect(a + Page, Page, Protection.Read);
        Assert.Contains(("may_split", FirstOffset, 4UL), backing.Notifications);
        Assert.Contains(("close", FirstOffset, 4UL), backing.Notifications);
        Assert.Contains(("open", FirstOffset, 1UL), backing.Notifications);
        Assert.Contains(("open", FirstOffset + 1, 1UL), backing.Notifications);
        Assert.Contains(("open", FirstOffset + 2, 2UL), backing.Notifications);
        Assert.Equal(3, backing.OpenCount);
        Assert.Equal(3, space.MapCount);

        space.Protect(a + Page, Page, Protection.ReadWrite);
        Assert.Equal(1, space.MapCount);
        Assert.Equal(1, backing.OpenCount);
        Assert.Equal(("open", FirstOffset, 4UL), backing.Notifications[^1]);

        space.Unmap(a, 4 * Page);
        Assert.Equal(("close", FirstOffset, 4UL), backing.Notifications[^1]);
        Assert.Equal(0, backing.OpenCount);
    }

    [Fact]
    public void RefusedSplitFailsUnmapProtectAndFixedMapWithEinvalChangingNothing()
    {
        using var space = NewSpace(FaultPath.MmapLock);
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8) { RefuseSplitAt = FirstOffset + 1 };
        ulong a = MapBacked(space, backing, MapFlags.Private);
        string maps = space.GetMaps();

        Assert.Equal(Errno.EINVAL, space.TryUnmap(a, Page));
        Assert.Equal(Errno.EINVAL, space.TryProtect(a + Page, Page, Protection.Read));
        Assert.Equal(Errno.EINVAL, space.TryMap(a, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _));
        Assert.Equal(maps, space.GetMaps());
        Assert.Equal(1, backing.OpenCount);

        Assert.Equal(Errno.None, space.TryUnmap(a + 2 * Page, Page));
        Assert.Equal(2, backing.OpenCount);
        Assert.Equal(2, space.MapCount);
    }

    [Fact]
    public void MapsShowTheBackingsNameAndOffset()
    {
        using var space = NewSpace(FaultPath.MmapLock);
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8, name: "/data/pattern.bin");
        ulong a = MapBacked(space, backing, MapFlags.Shared, Protection.Read);

        MappingInfo mapping = Assert.Single(space.GetMappings());
        Assert.Equal(FirstOffset * Page, mapping.Offset);
        Assert.True(mapping.Shared);
        Assert.Equal("/data/pattern.bin", mapping.Name);
        string line = space.GetMaps().TrimEnd('\n');
        Assert.StartsWith($"{a:x8}-{a + 4 * Page:x8} r--s {FirstOffset * Page:x8} 00:00 0 ", line);
        Assert.EndsWith(" /data/pattern.bin", line);
    }

    [Fact]
    public void BackedMappingRefusesAnonymousFlags()
    {
        using var space = NewSpace(FaultPath.MmapLock);
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8);
        Assert.Throws<MemoryOperationException>(() =>
            space.MapBacking(Base, Page, Protection.Read, MapFlags.PrivateAnonymous, backing, 0));
        Assert.Throws<MemoryOperationException>(() =>
            space.MapBacking(Base, Page, Protection.Read, MapFlags.Private | MapFlags.Fixed, backing, ulong.MaxValue));
    }
}
