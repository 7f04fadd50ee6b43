using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// Stack expansion (<c>expand_downwards</c>): an access below a <see cref="MapFlags.GrowsDown"/> mapping moves its
/// start down to the faulting page, on every fault path, unless the guard gap, <c>mmap_min_addr</c>, the stack limit
/// or the lock limit refuses it (then SIGSEGV with <c>SEGV_MAPERR</c> and nothing changes).
/// </summary>
public class StackGrowthTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Stack = 0x2000_0000;
    private const MapFlags StackFlags = MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.GrowsDown;

    private static AddressSpace NewSpace(FaultPath path = FaultPath.MmapLock, ulong stackLimit = 8 << 20, ulong lockLimit = 8 << 20) =>
        new(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20, FaultPath = path, StackLimit = stackLimit, MemoryLockLimit = lockLimit });

    private static (ulong Start, ulong End)[] Ranges(AddressSpace space) => space.GetMappings().Select(m => (m.Start, m.End)).ToArray();

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.VmaLock)]
    [InlineData(FaultPath.Speculative)]
    public void AStoreOnePageBelowGrowsTheMappingByOnePageOnEveryPath(FaultPath path)
    {
        using var space = NewSpace(path);
        space.Map(Stack, 4 * Page, Protection.ReadWrite, StackFlags);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu(); // the speculative path runs only with two users
        cpu.Store(Stack, 1L);

        Assert.Equal(AccessOutcome.Ok, cpu.TryStore(Stack - 8, 42L));

        Assert.Equal([(Stack - Page, Stack + 4 * Page)], Ranges(space));
        Assert.Equal(42L, cpu.Load<long>(Stack - 8));
        Assert.Equal(1L, cpu.Load<long>(Stack));
        Assert.Equal(0L, cpu.Load<long>(Stack - Page));
    }

    [Fact]
    public void AStoreFarBelowGrowsToItsPageAndLeavesTheRestZeroAndUnpopulated()
    {
        using var space = NewSpace();
        space.Map(Stack, 4 * Page, Protection.ReadWrite, StackFlags);
        using Cpu cpu = space.AttachCpu();
        ulong target = Stack - 100 * Page + 123;

        cpu.Store(target, (byte)7);

        Assert.Equal([(Stack - 100 * Page, Stack + 4 * Page)], Ranges(space));
        Assert.Equal(1, space.CountResidentPages(Stack - 100 * Page, Stack + 4 * Page));
        Assert.True(space.IsResident(Stack - 100 * Page));
        Assert.False(space.IsResident(Stack - 50 * Page));
        Assert.Equal((byte)7, cpu.Load<byte>(target));
        for (ulong a = Stack - 99 * Page; a < Stack; a += Page)
        {
            Assert.Equal(0L, cpu.Load<long>(a));
        }
        Assert.Single(space.GetMappings()); // the grown part is no VMA of its own
    }

    [Fact]
    public void AReadBelowGrowsTooAndAReadOnlyStackGrowsBeforeTheWriteIsRefused()
    {
        using var space = NewSpace();
        space.Map(Stack, 4 * Page, Protection.ReadWrite, StackFlags);
        space.Map(Stack + 0x100_0000, 4 * Page, Protection.Read, StackFlags);
        using Cpu cpu = space.AttachCpu();

        Assert.Equal(AccessOutcome.Ok, cpu.TryLoad(Stack - 2 * Page, out long value));
        Assert.Equal(0L, value);
        Assert.Equal(Stack - 2 * Page, space.GetMappings()[0].Start);

        // lock_mm_and_find_vma expands before access_error looks at the flags: the stack grows, the write is ACCERR.
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(Stack + 0x100_0000 - 3 * Page, 1L));
        Assert.Equal(Stack + 0x100_0000 - 3 * Page, space.GetMappings()[1].Start);
    }

    [Theory]
    [InlineData(255, false)]
    [InlineData(256, true)]
    [InlineData(300, true)]
    public void AnAccessibleMappingBelowKeepsTheGuardGapFree(int pagesAboveLower, bool grows)
    {
        using var space = NewSpace();
        ulong lowerEnd = Stack - 400 * Page;
        space.Map(lowerEnd - 4 * Page, 4 * Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Map(Stack, 4 * Page, Protection.ReadWrite, StackFlags);
        using Cpu cpu = space.AttachCpu();
        string before = space.GetMaps();
        ulong target = lowerEnd + (ulong)pagesAboveLower * Page + 16;

        AccessOutcome outcome = cpu.TryStore(target, 5L);

        if (grows)
        {
            Assert.Equal(AccessOutcome.Ok, outcome);
            Assert.Equal(lowerEnd + (ulong)pagesAboveLower * Page, space.GetMappings()[1].Start);
        }
        else
        {
            Assert.Equal(AccessOutcome.SegvMapErr, outcome);
            Assert.Equal(before, space.GetMaps());
        }
    }

    [Fact]
    public void AnInaccessibleOrGrowsDownMappingBelowLetsTheStackGrowRightUpToIt()
    {
        using var space = NewSpace();
        ulong noneEnd = Stack - 64 * Page;
        space.Map(noneEnd - 4 * Page, 4 * Page, Protection.None, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Map(Stack, 4 * Page, Protection.ReadWrite, StackFlags);
        ulong other = Stack + 0x100_0000;
        space.Map(other - 8 * Page, 4 * Page, Protection.ReadWrite, StackFlags);
        space.Map(other, 4 * Page, Protection.ReadWrite, StackFlags);
        using Cpu cpu = space.AttachCpu();

        cpu.Store(noneEnd, 1L);
        cpu.Store(other - 4 * Page, 2L);

        Assert.Equal([(noneEnd - 4 * Page, noneEnd), (noneEnd, Stack + 4 * Page), (other - 8 * Page, other - 4 * Page), (other - 4 * Page, other + 4 * Page)],
            Ranges(space));
        // The expansion merges with nothing, even where the flags would allow it.
        Assert.Equal(4, space.MapCount);
    }

    [Fact]
    public void GrowthPastTheStackLimitIsRefused()
    {
        using var space = NewSpace(stackLimit: 16 * Page);
        space.Map(Stack, 8 * Page, Protection.ReadWrite, StackFlags);
        using Cpu cpu = space.AttachCpu();

        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryStore(Stack - 9 * Page, 1L));
        Assert.Equal([(Stack, Stack + 8 * Page)], Ranges(space));
        Assert.Equal(AccessOutcome.Ok, cpu.TryStore(Stack - 8 * Page, 1L)); // exactly the limit
        Assert.Equal([(Stack - 8 * Page, Stack + 8 * Page)], Ranges(space));
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryStore(Stack - 8 * Page - 1, 1L));
        Assert.Equal(2, space.GetCounters()[VmCounters.SegvMapErr]);
    }

    [Fact]
    public void AnUnlimitedStackGrowsAsFarAsTheGuardGapAllows()
    {
        using var space = NewSpace(stackLimit: ulong.MaxValue);
        space.Map(Stack, Page, Protection.ReadWrite, StackFlags);
        using Cpu cpu = space.AttachCpu();

        cpu.Store(Stack - 0x1000_0000, 1L);

        Assert.Equal(Stack - 0x1000_0000, space.GetMappings()[0].Start);
    }

    [Fact]
    public void GrowthBelowMmapMinAddrIsRefused()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20, MmapMinAddress = 0x10000 });
        space.Map(0x12000, Page, Protection.ReadWrite, StackFlags);
        using Cpu cpu = space.AttachCpu();

        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryStore(0xF000, 1L));
        Assert.Equal(AccessOutcome.Ok, cpu.TryStore(0x10000, 1L));
        Assert.Equal([(0x10000UL, 0x13000UL)], Ranges(space));
    }

    [Fact]
    public void ALockedStackCountsItsGrowthAgainstTheLockLimitWithoutPopulatingIt()
    {
        using var space = NewSpace(lockLimit: 16 * Page);
        space.Map(Stack, 4 * Page, Protection.ReadWrite, StackFlags | MapFlags.Locked);
        using Cpu cpu = space.AttachCpu();
        Assert.Equal(4, space.LockedPages);

        cpu.Store(Stack - 8 * Page, 1L);
        Assert.Equal(12, space.LockedPages);
        // Only the faulting page is populated (populate_vma_page_range is exec's, not the fault's).
        Assert.Equal(5, space.CountResidentPages(Stack - 8 * Page, Stack + 4 * Page));

        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryStore(Stack - 13 * Page, 1L)); // 17 locked pages > 16
        Assert.Equal(12, space.LockedPages);
        Assert.Equal(AccessOutcome.Ok, cpu.TryStore(Stack - 12 * Page, 1L));
        Assert.Equal(16, space.LockedPages);

        space.Unmap(Stack - 12 * Page, 16 * Page);
        Assert.Equal(0, space.LockedPages);
    }

    [Fact]
    public void TheMapsLineOfAGrownStackIsAnonymousWithoutAName()
    {
        using var space = NewSpace();
        space.Map(Stack, 2 * Page, Protection.ReadWrite, StackFlags);
        using Cpu cpu = space.AttachCpu();

        cpu.Store(Stack - 3 * Page, 1L);

        Assert.Equal($"{Stack - 3 * Page:x8}-{Stack + 2 * Page:x8} rw-p 00000000 00:00 0 \n", space.GetMaps());
        Assert.Contains("VmFlags: rd wr mr mw me gd ac \n", space.GetSmaps());
        Assert.Contains("Rss:                   4 kB\n", space.GetSmaps());
    }

    [Fact]
    public void AForkedChildInheritsTheGrownStackAndGrowsItOnItsOwn()
    {
        using var space = NewSpace();
        space.Map(Stack, 2 * Page, Protection.ReadWrite, StackFlags);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(Stack - 2 * Page, 11L);

        using AddressSpace child = space.Fork();
        using Cpu childCpu = child.AttachCpu();
        Assert.Equal(11L, childCpu.Load<long>(Stack - 2 * Page));
        Assert.Equal([(Stack - 2 * Page, Stack + 2 * Page)], Ranges(child));

        childCpu.Store(Stack - 5 * Page, 12L);
        childCpu.Store(Stack - 2 * Page, 13L);
        Assert.Equal([(Stack - 5 * Page, Stack + 2 * Page)], Ranges(child));
        Assert.Equal([(Stack - 2 * Page, Stack + 2 * Page)], Ranges(space));
        Assert.Equal(11L, cpu.Load<long>(Stack - 2 * Page));
        Assert.Equal(AccessOutcome.Ok, cpu.TryLoad(Stack - 5 * Page, out long parentValue));
        Assert.Equal(0L, parentValue);
    }

    [Fact]
    public void UnmappingPartOfAGrownStackLeavesTwoGrowsDownPiecesAndTheUpperGrowsIntoTheHole()
    {
        using var space = NewSpace();
        space.Map(Stack, 2 * Page, Protection.ReadWrite, StackFlags);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(Stack - 8 * Page, 1L);
        cpu.Store(Stack - 2 * Page, 2L);

        space.Unmap(Stack - 6 * Page, 2 * Page);
        Assert.Equal([(Stack - 8 * Page, Stack - 6 * Page), (Stack - 4 * Page, Stack + 2 * Page)], Ranges(space));
        Assert.All(space.GetSmaps().Split("VmFlags:").Skip(1), flags => Assert.Contains(" gd ", flags));

        // The piece below grows down too, so it does not keep a guard gap: the upper piece grows into the hole.
        Assert.Equal(AccessOutcome.Ok, cpu.TryLoad(Stack - 6 * Page, out long hole));
        Assert.Equal(0L, hole);
        Assert.Equal([(Stack - 8 * Page, Stack - 6 * Page), (Stack - 6 * Page, Stack + 2 * Page)], Ranges(space));
        Assert.Equal(1L, cpu.Load<long>(Stack - 8 * Page));
        Assert.Equal(2L, cpu.Load<long>(Stack - 2 * Page));
    }

    [Fact]
    public void MprotectWithProtGrowsDownReachesTheGrownStart()
    {
        using var space = NewSpace();
        space.Map(Stack, 2 * Page, Protection.ReadWrite, StackFlags);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(Stack - 4 * Page, 1L);

        Assert.Equal(Errno.None, space.TryProtect(Stack + Page, Page, Protection.Read | Protection.GrowsDown));

        Assert.Equal([(Stack - 4 * Page, Stack + 2 * Page)], Ranges(space));
        Assert.Equal("r--p", space.GetMappings()[0].Permissions);
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(Stack - 4 * Page, 2L));
        Assert.Equal(1L, cpu.Load<long>(Stack - 4 * Page));
    }

    [Fact]
    public void TheReverseMapFindsPagesOnBothSidesOfTheOldStartAfterGrowthAndFork()
    {
        using var space = NewSpace();
        space.Map(Stack, 2 * Page, Protection.ReadWrite, StackFlags);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(Stack + Page, 1L);
        cpu.Store(Stack - 3 * Page, 2L); // vm_pgoff falls by three pages, so the old page keeps its offset

        Assert.Equal([new PageMapping(space, Stack + Page)], space.GetPageMappings(Stack + Page));
        Assert.Equal([new PageMapping(space, Stack - 3 * Page)], space.GetPageMappings(Stack - 3 * Page));
        using AddressSpace child = space.Fork();
        Assert.Equal([new PageMapping(space, Stack - 3 * Page), new PageMapping(child, Stack - 3 * Page)],
            space.GetPageMappings(Stack - 3 * Page));
    }

    [Fact]
    public void TheAnonVmaIsPreparedBeforeTheLimitsAreCheckedButNotBeforeTheGuardGap()
    {
        using var space = NewSpace(stackLimit: 4 * Page);
        space.Map(Stack - 10 * Page, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Map(Stack, 2 * Page, Protection.ReadWrite, StackFlags);
        space.Map(Stack + 0x100_0000, 2 * Page, Protection.ReadWrite, StackFlags);
        using Cpu cpu = space.AttachCpu();

        // Within the guard gap of the read-only mapping below: refused before anon_vma_prepare.
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryStore(Stack - Page, 1L));
        Assert.Null(space.Descriptor.Tree.LookupLockless(Stack)!.AnonVma);
        // Over the stack limit: refused by acct_stack_growth, after it (expand_downwards' order).
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryStore(Stack + 0x100_0000 - 3 * Page, 1L));
        Assert.NotNull(space.Descriptor.Tree.LookupLockless(Stack + 0x100_0000)!.AnonVma);
    }

    [Fact]
    public void AnAccessBelowAnOrdinaryMappingStaysASegfault()
    {
        using var space = NewSpace();
        space.Map(Stack, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();

        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryStore(Stack - Page, 1L));
        Assert.Equal([(Stack, Stack + 2 * Page)], Ranges(space));
    }
}
