using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// mremap: shrink, growth in place and by a move, MREMAP_FIXED over a mapping and across several, MREMAP_DONTUNMAP,
/// contents and copy-on-write sharing carried by moved page tables (not copied pages), locked mappings, mseal, and
/// each errno in the order Linux checks them.
/// </summary>
public sealed class MremapTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong PmdSpan = PageGeometry.PmdSize;
    private const ulong Base = 0x4000_0000;
    private const ulong Far = 0x5000_0000;

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    private static AddressSpace NewSpace(FaultPath path = FaultPath.MmapLock, ulong lockLimit = 64 << 10) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 32 << 20, MemoryLockLimit = lockLimit });

    private static void Fill(Cpu cpu, ulong start, int pages, long salt)
    {
        for (int i = 0; i < pages; i++)
        {
            cpu.Store(start + (ulong)i * Page, salt + i);
        }
    }

    private static void AssertFilled(Cpu cpu, ulong start, int pages, long salt)
    {
        for (int i = 0; i < pages; i++)
        {
            Assert.Equal(salt + i, cpu.Load<long>(start + (ulong)i * Page));
        }
    }

    [Fact]
    public void ShrinkUnmapsTheTailAndGivesItsFramesBack()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 8 * Page);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 8, 100);
        int frames = space.FramesInUse;

        Assert.Equal(a, space.Remap(a, 8 * Page, 3 * Page));

        Assert.Equal([(a, a + 3 * Page)], space.GetMappings().Select(m => (m.Start, m.End)));
        AssertFilled(cpu, a, 3, 100);
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(a + 3 * Page, out long _));
        Assert.Equal(3, space.ResidentPages);
        Assert.Equal(frames - 5, space.FramesInUse);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void GrowthInPlaceKeepsContentsAndMergesWithACompatibleNextMapping(FaultPath path)
    {
        using var space = NewSpace(path);
        ulong a = MapFixed(space, Base, 4 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        Fill(cpu, a, 4, 7);

        Assert.Equal(a, space.Remap(a, 4 * Page, 6 * Page));
        Assert.Equal(1, space.MapCount);
        AssertFilled(other, a, 4, 7);
        Assert.Equal(0L, other.Load<long>(a + 5 * Page));

        // The next mapping starts where the growth ends and carries on the page offsets: one VMA afterwards.
        MapFixed(space, a + 8 * Page, 2 * Page);
        Assert.Equal(a, space.Remap(a, 6 * Page, 8 * Page));
        Assert.Equal([(a, a + 10 * Page)], space.GetMappings().Select(m => (m.Start, m.End)));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void GrowthWithoutRoomMovesThePageTablesNotThePages(FaultPath path)
    {
        using var space = NewSpace(path);
        ulong a = MapFixed(space, Base, 4 * Page);
        MapFixed(space, a + 4 * Page, Page, Protection.Read);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        Fill(cpu, a, 4, 21);
        long[] frames = [.. Enumerable.Range(0, 4).Select(i => FrameAt(space, a + (ulong)i * Page))];
        long resident = space.ResidentPages;

        Assert.Equal(Errno.ENOMEM, space.TryRemap(a, 4 * Page, 8 * Page, RemapFlags.None, 0, out _));
        ulong moved = space.Remap(a, 4 * Page, 8 * Page, RemapFlags.MayMove);

        Assert.NotEqual(a, moved);
        Assert.Equal(frames, Enumerable.Range(0, 4).Select(i => FrameAt(space, moved + (ulong)i * Page)));
        AssertFilled(other, moved, 4, 21);
        Assert.Equal(0L, other.Load<long>(moved + 6 * Page));
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(a, out long _));
        Assert.Equal(resident, space.ResidentPages);
        Assert.Equal([new PageMapping(space, moved + Page)], space.GetPageMappings(moved + Page));
    }

    [Fact]
    public void AWholePmdMovesAsOneTable()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, PmdSpan);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 512, 3);
        Assert.Equal(WalkStatus.Ok, space.Descriptor.PageTable.WalkLockless(a, out PteLocation before, out _));
        int tables = space.PageTablePages;

        ulong moved = space.Remap(a, PmdSpan, PmdSpan, RemapFlags.MayMove | RemapFlags.Fixed, Base + 4 * PmdSpan);

        Assert.Equal(Base + 4 * PmdSpan, moved);
        Assert.Equal(WalkStatus.Ok, space.Descriptor.PageTable.WalkLockless(moved, out PteLocation after, out _));
        Assert.Equal(before.PteTable, after.PteTable);
        Assert.Equal(tables, space.PageTablePages);
        AssertFilled(cpu, moved, 512, 3);
        Assert.False(HasPte(space, a));
    }

    [Fact]
    public void AHugePmdMovesWholeWithItsFrame()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, PmdSpan);
        MemoryDescriptor mm = space.Descriptor;
        space.Advise(a, PmdSpan, Advice.HugePage);
        using (Cpu cpu = space.AttachCpu())
        {
            cpu.Store(a + Page, 9L);
        }
        Assert.Equal(WalkStatus.HugePmd, mm.PageTable.WalkLockless(a, out _, out ulong subpage));
        long pfn = Pte.Frame(subpage);

        ulong moved = space.Remap(a, PmdSpan, PmdSpan, RemapFlags.MayMove | RemapFlags.Fixed, Base + 2 * PmdSpan);

        Assert.Equal(PageGeometry.EntriesPerTable, space.CountResidentPages(moved, moved + PmdSpan));
        Assert.Equal(0, space.CountResidentPages(a, a + PmdSpan));
        Assert.Equal(1, mm.Memory.Info(pfn).RefCount);
        Assert.Equal(1, mm.Memory.Info(pfn).MapCount);
        Assert.Equal(WalkStatus.HugePmd, mm.PageTable.WalkLockless(moved, out _, out _));
        using Cpu reader = space.AttachCpu();
        Assert.Equal(9L, reader.Load<long>(moved + Page));
    }

    [Fact]
    public void AnOldLengthOfZeroDuplicatesASharedMappingAndMovesABackedOneWithItsPages()
    {
        using var space = NewSpace();
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8);
        ulong a = space.MapBacking(Base, 4 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, backing, 2);
        using Cpu cpu = space.AttachCpu();
        Assert.Equal(InMemoryBacking.PatternByte(3), cpu.Load<byte>(a + Page));

        // The historical duplicate: a second mapping of the same pages, the first one kept.
        ulong copy = space.Remap(a + Page, 0, 2 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Far);
        Assert.Equal(Far, copy);
        Assert.Equal([(a, a + 4 * Page), (Far, Far + 2 * Page)], space.GetMappings().Select(m => (m.Start, m.End)));
        Assert.Equal(InMemoryBacking.PatternByte(4), cpu.Load<byte>(copy + Page));
        Assert.Equal(2, backing.OpenCount);

        // A move carries the backing's frame with its entry.
        long pfn = backing.FrameOf(3);
        ulong moved = space.Remap(a, 4 * Page, 4 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Far + 8 * Page);
        Assert.Equal(pfn, FrameAt(space, moved + Page));
        Assert.Equal(2, space.Descriptor.Memory.Info(pfn).RefCount);
        Assert.Equal(2, backing.OpenCount);
    }

    [Fact]
    public void FixedReplacesTheDestinationMapping()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 4 * Page);
        ulong d = MapFixed(space, Far, 8 * Page, Protection.Read);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 4, 50);
        space.Protect(d, 8 * Page, Protection.ReadWrite);
        Fill(cpu, d, 8, 900);
        space.Protect(d, 8 * Page, Protection.Read);
        int frames = DataFrames(space);

        Assert.Equal(d + 2 * Page, space.Remap(a, 4 * Page, 4 * Page, RemapFlags.MayMove | RemapFlags.Fixed, d + 2 * Page));

        Assert.Equal(
            [(d, d + 2 * Page, Protection.Read), (d + 2 * Page, d + 6 * Page, Protection.ReadWrite), (d + 6 * Page, d + 8 * Page, Protection.Read)],
            space.GetMappings().Select(m => (m.Start, m.End, m.Protection)));
        AssertFilled(cpu, d + 2 * Page, 4, 50);
        Assert.Equal(900L, cpu.Load<long>(d));
        Assert.Equal(907L, cpu.Load<long>(d + 7 * Page));
        Assert.Equal(frames - 4, DataFrames(space));
    }

    [Fact]
    public void FixedWithEqualLengthsMovesEveryMappingInTheRangeKeepingTheGaps()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 2 * Page);
        MapFixed(space, a + 3 * Page, 2 * Page, Protection.Read);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1L);

        Assert.Equal(Far, space.Remap(a, 5 * Page, 5 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Far));

        Assert.Equal([(Far, Far + 2 * Page), (Far + 3 * Page, Far + 5 * Page)], space.GetMappings().Select(m => (m.Start, m.End)));
        Assert.Equal(1L, cpu.Load<long>(Far));
        // A hole at the start of the range is EFAULT, and so is a resize across mappings.
        Assert.Equal(Errno.EFAULT, space.TryRemap(Far - Page, 3 * Page, 3 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Base, out _));
        Assert.Equal(Errno.EFAULT, space.TryRemap(Far, 5 * Page, 6 * Page, RemapFlags.MayMove, 0, out _));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void DontUnmapLeavesTheOldRangeMappedAndEmpty(FaultPath path)
    {
        using var space = NewSpace(path);
        ulong a = MapFixed(space, Base, 4 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        Fill(cpu, a, 4, 70);
        int frames = DataFrames(space);

        ulong moved = space.Remap(a, 4 * Page, 4 * Page, RemapFlags.MayMove | RemapFlags.DontUnmap, 0);

        Assert.NotEqual(a, moved);
        Assert.Equal(2, space.MapCount);
        Assert.Equal(frames, DataFrames(space));
        Assert.False(space.IsResident(a));
        AssertFilled(other, moved, 4, 70);
        Assert.Equal(0L, other.Load<long>(a + Page));
        // The whole VMA moved, so the old one lost its anon_vma: its new pages belong to nobody else.
        other.Store(a + 2 * Page, 5L);
        Assert.Equal([new PageMapping(space, a + 2 * Page)], space.GetPageMappings(a + 2 * Page));
        Assert.Equal(72L, cpu.Load<long>(moved + 2 * Page));
    }

    [Fact]
    public void DontUnmapOfALockedMappingUnlocksTheOldOneAndCountsTheNewOneAsLinuxDoes()
    {
        using var space = NewSpace();
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.Locked);
        Assert.Equal(4, space.LockedPages);

        ulong moved = space.Remap(a, 4 * Page, 4 * Page, RemapFlags.MayMove | RemapFlags.DontUnmap, 0);

        // dontunmap_complete clears VM_LOCKED on the old VMA but leaves mm->locked_vm alone.
        Assert.Equal(8, space.LockedPages);
        Assert.Single(space.GetSmaps().Split('\n'), l => l.StartsWith("VmFlags", StringComparison.Ordinal) && l.Contains(" lo", StringComparison.Ordinal));
        Assert.Equal(4, space.CountResidentPages(moved, moved + 4 * Page));
        Assert.Equal(0, space.CountResidentPages(a, a + 4 * Page));
    }

    [Fact]
    public void ALockedMappingThatGrowsIsPopulatedAndCountedAgainstTheLimit()
    {
        using var space = NewSpace(lockLimit: 8 * Page);
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.Locked);
        Assert.Equal(4, space.ResidentPages);

        Assert.Equal(a, space.Remap(a, 4 * Page, 6 * Page));
        Assert.Equal(6, space.ResidentPages);
        Assert.Equal(6, space.LockedPages);
        Assert.Equal(Errno.EAGAIN, space.TryRemap(a, 6 * Page, 9 * Page, RemapFlags.MayMove, 0, out _));

        MapFixed(space, a + 6 * Page, Page);
        ulong moved = space.Remap(a, 6 * Page, 8 * Page, RemapFlags.MayMove);
        Assert.NotEqual(a, moved);
        Assert.Equal(8, space.LockedPages);
        Assert.Equal(8, space.CountResidentPages(moved, moved + 8 * Page));
        space.Remap(moved, 8 * Page, 2 * Page);
        Assert.Equal(2, space.LockedPages);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AMoveAfterForkKeepsPagesSharedCopyOnWriteOnBothSides(FaultPath path)
    {
        using var parent = NewSpace(path);
        ulong a = MapFixed(parent, Base, 4 * Page);
        using Cpu cpu = parent.AttachCpu();
        using Cpu other = parent.AttachCpu();
        Fill(cpu, a, 4, 10);
        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();

        ulong moved = parent.Remap(a, 4 * Page, 4 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Far);

        Assert.Equal(FrameAt(child, a + Page), FrameAt(parent, moved + Page));
        Assert.Equal([new PageMapping(parent, moved + Page), new PageMapping(child, a + Page)], parent.GetPageMappings(moved + Page));
        other.Store(moved + Page, -1L);
        childCpu.Store(a + 2 * Page, -2L);
        Assert.Equal(-1L, cpu.Load<long>(moved + Page));
        Assert.Equal(12L, cpu.Load<long>(moved + 2 * Page));
        Assert.Equal(11L, childCpu.Load<long>(a + Page));
        Assert.Equal(-2L, childCpu.Load<long>(a + 2 * Page));
        AssertFilled(childCpu, a, 1, 10);
        Assert.Equal(13L, childCpu.Load<long>(a + 3 * Page));
        Assert.Equal(13L, cpu.Load<long>(moved + 3 * Page));
    }

    [Fact]
    public void ASealedMappingCannotBeResizedOrMoved()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 4 * Page);
        Assert.Equal(Errno.None, space.Seal(a, 4 * Page));
        Assert.Equal(Errno.EPERM, space.TryRemap(a, 4 * Page, 2 * Page, RemapFlags.None, 0, out _));
        Assert.Equal(Errno.EPERM, space.TryRemap(a, 4 * Page, 8 * Page, RemapFlags.MayMove, 0, out _));
        Assert.Equal(Errno.EPERM, space.TryRemap(a, 4 * Page, 4 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Far, out _));
        // Nor can a move replace it.
        ulong b = MapFixed(space, Far, Page);
        Assert.Equal(Errno.EPERM, space.TryRemap(b, Page, Page, RemapFlags.MayMove | RemapFlags.Fixed, a, out _));
        Assert.Equal([(a, a + 4 * Page), (b, b + Page)], space.GetMappings().Select(m => (m.Start, m.End)));
    }

    [Fact]
    public void EachBadArgumentHasLinuxsErrnoAndChangesNothing()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 4 * Page);
        string maps = space.GetMaps();
        (ulong Old, ulong OldLength, ulong NewLength, RemapFlags Flags, ulong New, Errno Expected)[] cases =
        [
            (a, Page, Page, (RemapFlags)8, 0, Errno.EINVAL),
            (a + 1, Page, Page, RemapFlags.None, 0, Errno.EINVAL),
            (a, Page, 0, RemapFlags.None, 0, Errno.EINVAL),
            (a, Page, ulong.MaxValue, RemapFlags.MayMove, 0, Errno.EINVAL),
            (a, Page, 1UL << 47, RemapFlags.None, 0, Errno.EINVAL),
            (a, Page, Page, RemapFlags.Fixed, Far, Errno.EINVAL),
            (a, Page, Page, RemapFlags.DontUnmap, Far, Errno.EINVAL),
            (a, Page, 2 * Page, RemapFlags.MayMove | RemapFlags.DontUnmap, 0, Errno.EINVAL),
            (a, Page, Page, RemapFlags.MayMove | RemapFlags.Fixed, Far + 1, Errno.EINVAL),
            (a, 2 * Page, 2 * Page, RemapFlags.MayMove | RemapFlags.Fixed, a + Page, Errno.EINVAL),
            (a, Page, Page, RemapFlags.MayMove | RemapFlags.Fixed, PageGeometry.TaskSize, Errno.EINVAL),
            (a, 0, Page, RemapFlags.MayMove, 0, Errno.EINVAL),
            (Far, Page, Page, RemapFlags.None, 0, Errno.EFAULT),
            (a, 5 * Page, 6 * Page, RemapFlags.MayMove, 0, Errno.EFAULT),
            (a + Page, 2 * Page, 4 * Page, RemapFlags.None, 0, Errno.ENOMEM),
        ];
        foreach (var c in cases)
        {
            Assert.True(c.Expected == space.TryRemap(c.Old, c.OldLength, c.NewLength, c.Flags, c.New, out ulong remapped),
                $"mremap(0x{c.Old:x}, {c.OldLength}, {c.NewLength}, {c.Flags}, 0x{c.New:x})");
            Assert.Equal(0UL, remapped);
            Assert.Equal(maps, space.GetMaps());
        }
        // The same length over a range past the mapping's end asks for nothing: Linux returns the address.
        Assert.Equal(a, space.Remap(a, 5 * Page, 5 * Page));
        var error = Assert.Throws<MemoryOperationException>(() => space.Remap(a, Page, 2 * Page, RemapFlags.MayMove | RemapFlags.DontUnmap, Far));
        Assert.Equal("mremap(0x40000000, 4096, 8192, MREMAP_MAYMOVE|MREMAP_DONTUNMAP, 0x50000000) failed: EINVAL (Invalid argument)", error.Message);
        Assert.Equal("mremap", error.Operation);
    }

    [Fact]
    public void TheMapCountLimitRefusesAMoveBeforeAnythingChanges()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20, MaxMapCount = 8 });
        for (int i = 0; i < 5; i++)
        {
            MapFixed(space, Base + (ulong)i * 2 * Page, Page);
        }
        // map_count + 2 >= max - 3 for a move to a given address; map_count >= max - 3 for any move.
        Assert.Equal(Errno.ENOMEM, space.TryRemap(Base, Page, Page, RemapFlags.MayMove | RemapFlags.Fixed, Far, out _));
        Assert.Equal(Errno.ENOMEM, space.TryRemap(Base, Page, 4 * Page, RemapFlags.MayMove, 0, out _));
        Assert.Equal(5, space.MapCount);
        space.Unmap(Base, Page);
        Assert.Equal(Errno.ENOMEM, space.TryRemap(Base + 2 * Page, Page, Page, RemapFlags.MayMove | RemapFlags.Fixed, Far, out _));
        Assert.Equal(Errno.None, space.TryRemap(Base + 2 * Page, Page, 4 * Page, RemapFlags.MayMove, 0, out _));
    }

    [Fact]
    public void AnUntouchedMappingMovesWithAFreshOffsetAndMergesAtTheDestination()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 4 * Page);
        ulong b = MapFixed(space, Far, 2 * Page);
        // Neither VMA has an anon_vma: the moved one's offset starts at its new address and continues b's.
        Assert.Equal(b + 2 * Page, space.Remap(a, 4 * Page, 4 * Page, RemapFlags.MayMove | RemapFlags.Fixed, b + 2 * Page));
        Assert.Equal([(b, b + 6 * Page)], space.GetMappings().Select(m => (m.Start, m.End)));
    }

    // Frames in use that are not page tables: data pages and the Cpus' frame caches.
    private static int DataFrames(AddressSpace space) => space.FramesInUse - space.PageTablePages;

    private static long FrameAt(AddressSpace space, ulong address) => Pte.Frame(space.Descriptor.PageTable.Lookup(address, space.Descriptor.Probes));
}
