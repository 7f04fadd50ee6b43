using Faultline.Backing;
using Faultline.Physical;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Shared anonymous memory (<c>MAP_SHARED|MAP_ANONYMOUS</c>, a shmem object per mapping) on each fault path: a fork's
/// two sides see each other's writes with no copy, DONTNEED keeps the contents and REMOVE drops them in every address
/// space, mincore reports the object's pages, the maps show <c>/dev/zero (deleted)</c>, and every frame goes back when
/// the last mapping goes, whichever side goes first.
/// </summary>
public sealed class SharedMemoryTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;
    private const int Pages = 16;

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    private static AddressSpace NewSpace(FaultPath path = FaultPath.MmapLock) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 32 << 20 });

    private static ulong MapShared(AddressSpace space, ulong address, int pages, Protection protection = Protection.ReadWrite) =>
        space.Map(address, (ulong)pages * Page, protection, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);

    // Frames of the arena that hold shared-memory pages: none may be left once the last mapping of an object went.
    private static int ShmemFrames(AddressSpace space)
    {
        PhysicalMemory memory = space.Descriptor.Memory;
        int count = 0;
        for (int pfn = 1; pfn < memory.FrameCount; pfn++)
        {
            count += memory.Info(pfn).Kind == FrameKind.Shmem ? 1 : 0;
        }
        return count;
    }

    private static SharedMemoryObject ObjectAt(AddressSpace space, ulong address) =>
        (SharedMemoryObject)space.Descriptor.Tree.FindFirstEndingAbove(address)!.Backing;

    [Theory]
    [MemberData(nameof(Paths))]
    public void ParentAndChildSeeEachOthersWritesAfterFork(FaultPath path)
    {
        using AddressSpace parent = NewSpace(path);
        ulong a = MapShared(parent, Base, Pages);
        using Cpu parentCpu = parent.AttachCpu();
        using Cpu parentIdle = parent.AttachCpu();
        for (int i = 0; i < Pages / 2; i++)
        {
            parentCpu.Store(a + (ulong)i * Page, 100L + i);
        }

        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();
        using Cpu childIdle = child.AttachCpu();
        // dup_mmap copies no PTE of a shared VMA without an anon_vma: the child faults the pages in from the object.
        Assert.False(child.IsResident(a));
        Dictionary<string, long> childBefore = Counters(child);
        for (int i = 0; i < Pages / 2; i++)
        {
            Assert.Equal(100L + i, childCpu.Load<long>(a + (ulong)i * Page));
        }
        for (int i = 0; i < Pages; i++)
        {
            childCpu.Store(a + (ulong)i * Page, 200L + i);
        }
        for (int i = 0; i < Pages; i++)
        {
            Assert.Equal(200L + i, parentCpu.Load<long>(a + (ulong)i * Page));
        }
        Assert.Equal(0, Delta(childBefore, child, "cow_fault"));
        Assert.Equal(0, Delta(childBefore, child, "nr_anon_pages"));
        Assert.True(Delta(childBefore, child, HandledOnPathCounter(path)) > 0);
        // One frame per page, mapped by both: the object's reference and one per mapping.
        SharedMemoryObject shmem = ObjectAt(parent, a);
        Assert.Same(shmem, ObjectAt(child, a));
        Assert.Equal(Pages, shmem.CachedPages);
        Assert.Equal(Pages, ShmemFrames(parent));
        Assert.Equal(Pages, parent.ResidentPages);
        Assert.Equal(Pages, child.ResidentPages);
        Assert.Equal(2, shmem.MappingCount);
    }

    [Fact]
    public void SmapsCountsSharedPagesAsSharedOnlyWhileTwoAddressSpacesMapThem()
    {
        using AddressSpace parent = NewSpace();
        ulong a = MapShared(parent, Base, 4);
        using Cpu parentCpu = parent.AttachCpu();
        parentCpu.Store(a, 1L);
        _ = parentCpu.Load<long>(a + Page);
        string alone = parent.GetSmaps();
        // A written page is dirty, a read one clean; mapped once, both are private (refcount 2, map count 1).
        Assert.Contains("Rss:                   8 kB", alone);
        Assert.Contains("Private_Clean:         4 kB", alone);
        Assert.Contains("Private_Dirty:         4 kB", alone);
        Assert.Contains("Anonymous:             0 kB", alone);
        Assert.Contains("VmFlags: rd wr sh mr mw me ms ", alone);

        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();
        // The read maps both cached pages (fault-around), each now mapped by two address spaces.
        _ = childCpu.Load<long>(a);
        string shared = child.GetSmaps();
        Assert.Contains("Rss:                   8 kB", shared);
        Assert.Contains("Shared_Clean:          4 kB", shared);
        Assert.Contains("Shared_Dirty:          4 kB", shared);
        Assert.Contains("Pss:                   4 kB", shared);
    }

    [Fact]
    public void SmapsLockedIsTheProportionalShareOfALockedMappingDuplicatedByMremap()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 32 << 20, CapIpcLock = true });
        ulong a = space.Map(Base, 8 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed | MapFlags.Locked);
        Assert.Contains("Locked:               32 kB", space.GetSmaps());

        // An old length of 0 maps pages 2..5 of the object again; the locked copy is populated, and each of its four
        // pages is now mapped twice, so __show_smap's pss_locked counts half of each in both mappings.
        ulong copy = space.Remap(a + 2 * Page, 0, 4 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Base + 16 * Page);
        Assert.Equal(4, space.CountResidentPages(copy, copy + 4 * Page));
        string smaps = space.GetSmaps();
        Assert.Contains("Locked:               24 kB", smaps);
        Assert.Contains("Locked:                8 kB", smaps);
        Assert.Contains("Rss:                  16 kB", smaps);
    }

    [Fact]
    public void AStoreThroughAReadFaultedPageDirtiesOnlyThatMappingUntilItIsZapped()
    {
        using AddressSpace parent = NewSpace();
        ulong a = MapShared(parent, Base, 1);
        using Cpu parentCpu = parent.AttachCpu();
        _ = parentCpu.Load<long>(a);
        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();
        _ = childCpu.Load<long>(a);
        Dictionary<string, long> before = Counters(parent);
        // The read mapped the page writable and clean (shmem wants no write notification): the store takes no fault
        // and dirties the parent's PTE only, as the hardware's dirty bit does.
        parentCpu.Store(a, 3L);
        Assert.Equal(0, Delta(before, parent, "pgfault"));
        Assert.Contains("Shared_Dirty:          4 kB", parent.GetSmaps());
        Assert.Contains("Shared_Clean:          4 kB", child.GetSmaps());
        // zap_pte_range hands the PTE's dirtiness to the page.
        parent.Advise(a, Page, Advice.DontNeed);
        Assert.Contains("Private_Dirty:         4 kB", child.GetSmaps());
        Assert.Equal(3L, childCpu.Load<long>(a));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void DontNeedDropsOnlyTheMappingAndTheNextTouchRereadsTheObject(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        ulong a = MapShared(space, Base, Pages);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        for (int i = 0; i < Pages; i++)
        {
            cpu.Store(a + (ulong)i * Page, 7L + i);
        }
        space.Advise(a, Pages * Page, Advice.DontNeed);
        Assert.Equal(0, space.ResidentPages);
        Assert.False(space.IsResident(a));
        // mincore reports the object's page cache, not the PTEs.
        var vector = new byte[Pages];
        Assert.Equal(Errno.None, space.Mincore(a, Pages * Page, vector));
        Assert.All(vector, b => Assert.Equal(1, b));
        Assert.Equal(Pages, ShmemFrames(space));
        for (int i = 0; i < Pages; i++)
        {
            Assert.Equal(7L + i, cpu.Load<long>(a + (ulong)i * Page));
        }
        Assert.Equal(Pages, ShmemFrames(space));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void RemovePunchesAHoleInEveryAddressSpace(FaultPath path)
    {
        using AddressSpace parent = NewSpace(path);
        ulong a = MapShared(parent, Base, Pages);
        using Cpu parentCpu = parent.AttachCpu();
        using Cpu parentIdle = parent.AttachCpu();
        for (int i = 0; i < Pages; i++)
        {
            parentCpu.Store(a + (ulong)i * Page, 50L + i);
        }
        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();
        for (int i = 0; i < Pages; i++)
        {
            Assert.Equal(50L + i, childCpu.Load<long>(a + (ulong)i * Page));
        }

        // Pages 4..7 leave the object and both address spaces' tables.
        child.Advise(a + 4 * Page, 4 * Page, Advice.Remove);
        Assert.False(parent.IsResident(a + 5 * Page));
        Assert.False(child.IsResident(a + 5 * Page));
        Assert.True(parent.IsResident(a + 3 * Page));
        var vector = new byte[Pages];
        Assert.Equal(Errno.None, parent.Mincore(a, Pages * Page, vector));
        Assert.Equal("1111000011111111", string.Concat(vector));
        Assert.Equal(Pages - 4, parent.ResidentPages);
        Assert.Equal(Pages - 4, child.ResidentPages);
        Assert.Equal(Pages - 4, ShmemFrames(parent));
        for (int i = 0; i < Pages; i++)
        {
            long expected = i is >= 4 and < 8 ? 0 : 50L + i;
            Assert.Equal(expected, parentCpu.Load<long>(a + (ulong)i * Page));
            Assert.Equal(expected, childCpu.Load<long>(a + (ulong)i * Page));
        }
        // The refilled holes are one new page each, shared again.
        parentCpu.Store(a + 5 * Page, 9L);
        Assert.Equal(9L, childCpu.Load<long>(a + 5 * Page));
        Assert.Equal(Pages, ShmemFrames(parent));
    }

    [Fact]
    public void FreeIsRefusedAndLockedRemoveIsRefused()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapShared(space, Base, 4);
        Assert.Equal(Errno.EINVAL, space.TryAdvise(a, Page, Advice.Free));
        Assert.Equal(Errno.None, space.Lock(a, Page));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(a, Page, Advice.Remove));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(a, Page, Advice.WipeOnFork));
        Assert.Equal(Errno.None, space.Msync(a, 4 * Page, SyncFlags.Sync));
        // mlock populated the page: read faults (shared memory is never populated for write), so it is clean.
        Assert.True(space.IsResident(a));
        Assert.Contains("Private_Clean:         4 kB", space.GetSmaps());
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void ReadOnlySharedMemoryBecomesWritableWithMprotect(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        ulong a = MapShared(space, Base, 4, Protection.Read);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        Assert.Equal(0L, cpu.Load<long>(a));
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(a, 1L));
        // VM_MAYWRITE: the object is writable, so even a read-only mapping may punch holes and become writable.
        Assert.Equal(Errno.None, space.TryAdvise(a + Page, Page, Advice.Remove));
        space.Protect(a, 4 * Page, Protection.ReadWrite);
        cpu.Store(a, 5L);
        Assert.Equal(5L, cpu.Load<long>(a));
        Assert.Contains("Private_Dirty:         4 kB", space.GetSmaps());
    }

    [Fact]
    public void MapsShowsTheDeletedDevZeroFileAndSplitsKeepTheObject()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapShared(space, Base, 4);
        ulong b = MapShared(space, Base + 4 * Page, 1);
        ulong inodeA = ObjectAt(space, a).Inode, inodeB = ObjectAt(space, b).Inode;
        Assert.NotEqual(inodeA, inodeB);
        // Two shared anonymous mappings are two objects: adjacent, they never merge.
        string maps = space.GetMaps();
        Assert.Equal(
            $"40000000-40004000 rw-s 00000000 00:01 {inodeA}".PadRight(73) + "/dev/zero (deleted)\n"
            + $"40004000-40005000 rw-s 00000000 00:01 {inodeB}".PadRight(73) + "/dev/zero (deleted)\n",
            maps);
        // A split keeps the object, with the offset moving along; restoring the protection merges the pieces back.
        space.Protect(a + Page, Page, Protection.Read);
        IReadOnlyList<MappingInfo> split = space.GetMappings();
        Assert.Equal(4, split.Count);
        Assert.Equal((Page, inodeA, "r--s"), (split[1].Offset, split[1].Inode, split[1].Permissions));
        Assert.Equal((2 * Page, inodeA), (split[2].Offset, split[2].Inode));
        Assert.Equal(3, ObjectAt(space, a).MappingCount);
        space.Protect(a + Page, Page, Protection.ReadWrite);
        Assert.Equal(maps, space.GetMaps());
        Assert.Equal(1, ObjectAt(space, a).MappingCount);
    }

    [Fact]
    public void PiecesOfAnObjectShareItsPagesAndAMapFixedHoleIsAnotherObject()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapShared(space, Base, 8);
        using Cpu cpu = space.AttachCpu();
        for (int i = 0; i < 8; i++)
        {
            cpu.Store(a + (ulong)i * Page, 10L + i);
        }
        SharedMemoryObject first = ObjectAt(space, a);
        MapShared(space, a + 2 * Page, 2);
        Assert.Equal(0L, cpu.Load<long>(a + 2 * Page));
        Assert.NotSame(first, ObjectAt(space, a + 2 * Page));
        Assert.Same(first, ObjectAt(space, a + 4 * Page));
        Assert.Equal(14L, cpu.Load<long>(a + 4 * Page));
        Assert.Equal(11L, cpu.Load<long>(a + Page));
        // The hole's pages stay in the first object (it still covers them by offset), as on Linux.
        Assert.Equal(8, first.CachedPages);
    }

    [Fact]
    public void AReadFaultMapsTheCachedPagesAroundIt()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapShared(space, Base, 40);
        using Cpu cpu = space.AttachCpu();
        for (int i = 0; i < 40; i++)
        {
            cpu.Store(a + (ulong)i * Page, (long)i);
        }
        space.Advise(a, 40 * Page, Advice.DontNeed);
        space.Advise(a + 20 * Page, Page, Advice.Remove);
        // fault_around_bytes 64 KiB: the aligned 16-page window [16, 32) of the table, except the punched page 20.
        Assert.Equal(17L, cpu.Load<long>(a + 17 * Page));
        var resident = Enumerable.Range(0, 40).Where(i => space.IsResident(a + (ulong)i * Page)).ToArray();
        Assert.Equal(Enumerable.Range(16, 16).Where(i => i != 20).ToArray(), resident);
        Assert.Equal(15, space.ResidentPages);
        Assert.Equal(0L, cpu.Load<long>(a + 20 * Page));
        Assert.Equal(16, space.ResidentPages);
    }

    [Fact]
    public void FaultAroundFollowsTheOption()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 32 << 20, FaultAroundBytes = 4096 });
        ulong a = MapShared(space, Base, 8);
        using Cpu cpu = space.AttachCpu();
        for (int i = 0; i < 8; i++)
        {
            cpu.Store(a + (ulong)i * Page, (long)i);
        }
        space.Advise(a, 8 * Page, Advice.DontNeed);
        Assert.Equal(3L, cpu.Load<long>(a + 3 * Page));
        Assert.Equal(1, space.ResidentPages);
        Assert.Throws<ArgumentOutOfRangeException>(() => new AddressSpace(new FaultlineOptions { FaultAroundBytes = 3 << 12 }));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EveryFrameGoesBackWhenTheLastMappingGoesWhicheverSideIsFirst(bool parentFirst)
    {
        AddressSpace parent = NewSpace();
        ulong a = MapShared(parent, Base, Pages);
        Cpu parentCpu = parent.AttachCpu();
        for (int i = 0; i < Pages; i++)
        {
            parentCpu.Store(a + (ulong)i * Page, (long)i);
        }
        AddressSpace child = parent.Fork();
        Cpu childCpu = child.AttachCpu();
        for (int i = 0; i < Pages; i += 2)
        {
            Assert.Equal((long)i, childCpu.Load<long>(a + (ulong)i * Page));
        }
        SharedMemoryObject shmem = ObjectAt(parent, a);
        (AddressSpace first, Cpu firstCpu, AddressSpace second, Cpu secondCpu) =
            parentFirst ? (parent, parentCpu, child, childCpu) : (child, childCpu, parent, parentCpu);
        firstCpu.Dispose();
        first.Dispose();
        Assert.Equal(1, shmem.MappingCount);
        Assert.Equal(Pages, ShmemFrames(second));
        Assert.Equal((long)Pages - 1, secondCpu.Load<long>(a + (Pages - 1) * Page));
        second.Unmap(a, Pages * Page);
        Assert.Equal(0, shmem.MappingCount);
        Assert.Equal(0, shmem.CachedPages);
        Assert.Equal(0, ShmemFrames(second));
        Assert.Equal(0, second.ResidentPages);
        secondCpu.Dispose();
        second.Dispose();
    }

    [Fact]
    public void UnmappingOnePieceKeepsTheObjectForTheOthers()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapShared(space, Base, 8);
        using Cpu cpu = space.AttachCpu();
        for (int i = 0; i < 8; i++)
        {
            cpu.Store(a + (ulong)i * Page, 30L + i);
        }
        space.Unmap(a, 4 * Page);
        SharedMemoryObject shmem = ObjectAt(space, a + 4 * Page);
        Assert.Equal(1, shmem.MappingCount);
        // munmap drops only PTEs: the object keeps every page while any piece maps it.
        Assert.Equal(8, shmem.CachedPages);
        Assert.Equal(4, space.ResidentPages);
        Assert.Equal(37L, cpu.Load<long>(a + 7 * Page));
        space.Unmap(a + 4 * Page, 4 * Page);
        Assert.Equal(0, ShmemFrames(space));
    }
}
