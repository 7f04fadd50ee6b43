using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// Memory groups (the cgroup v2 memory controller) through the public surface: charges that follow first touch,
/// copy-on-write, fork, swap-in and shared memory and go back to zero with unmap and dispose; reclaim under the limit
/// from the group's own pages only; OOM with and without a swap area; the OOM handler; lowering the limit; bad input.
/// </summary>
public sealed class MemoryGroupTests
{
    private const long Page = 4096;
    private const ulong Base = 0x1000_0000;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static AddressSpace NewSpace(long? limitPages, FaultPath path = FaultPath.MmapLock, bool swap = false,
        long ramBytes = 16 << 20) => new(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = ramBytes,
            PoisonFreedFrames = true,
            MemoryLimitBytes = limitPages * Page,
            Swap = swap ? new SwapOptions { SizeBytes = 32 << 20, BackgroundReclaim = false } : null,
        });

    private static long Stamp(ulong address) => (long)(address * 2654435761UL) ^ 0x3C3C;

    private static void Fill(Cpu cpu, ulong start, int pages)
    {
        for (int i = 0; i < pages; i++)
        {
            ulong page = start + (ulong)i * (ulong)Page;
            cpu.Store(page, Stamp(page));
        }
    }

    private static void Verify(Cpu cpu, ulong start, int pages)
    {
        for (int i = 0; i < pages; i++)
        {
            ulong page = start + (ulong)i * (ulong)Page;
            Assert.Equal(Stamp(page), cpu.Load<long>(page));
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void FirstTouchChargesAndUnmapUnchargesOnEveryPath(FaultPath path)
    {
        using AddressSpace space = NewSpace(limitPages: 64, path);
        MemoryGroup group = space.MemoryGroup!;
        ulong a = space.Map(Base, 32 * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        Assert.Equal(64 * Page, group.LimitBytes);
        // Reads map the zero page: nothing charged.
        for (int i = 0; i < 8; i++)
        {
            Assert.Equal(0L, cpu.Load<long>(a + (ulong)(i * Page)));
        }
        Assert.Equal(0, group.UsageBytes);
        Fill(cpu, a, 32);
        Assert.Equal(32 * Page, group.UsageBytes);
        Assert.Equal(32 * Page, group.ReadStat()["anon"]);
        space.Unmap(a, 16 * (ulong)Page);
        Assert.Equal(16 * Page, group.UsageBytes);
        space.Unmap(a + 16 * (ulong)Page, 16 * (ulong)Page);
        Assert.Equal(0, group.UsageBytes);
        Assert.Equal(32 * Page, group.PeakBytes);
        group.ResetPeak();
        Assert.Equal(0, group.PeakBytes);
        Assert.Equal(0, group.MaxEvents);
        Assert.Equal(0, space.PoisonViolations);
    }

    [Fact]
    public void AnUnlimitedAddressSpaceHasNoGroupAndASiblingGroupWithoutALimitStillCounts()
    {
        using AddressSpace space = new(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        Assert.Null(space.MemoryGroup);
        MemoryGroup sibling = MemoryGroup.Create(space);
        Assert.Null(sibling.LimitBytes);
        using AddressSpace child = space.Fork(sibling);
        Assert.Same(sibling, child.MemoryGroup);
        ulong a = child.Map(0, 4 * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using Cpu cpu = child.AttachCpu();
        Fill(cpu, a, 4);
        Assert.Equal(4 * Page, sibling.UsageBytes);
        child.Unmap(a, 4 * (ulong)Page);
        Assert.Equal(0, sibling.UsageBytes);
    }

    [Fact]
    public void CopyOnWriteCopiesAreChargedToTheChildsGroupAndEverythingGoesBackWithDispose()
    {
        AddressSpace parent = NewSpace(limitPages: 256);
        MemoryGroup group = parent.MemoryGroup!;
        ulong a = parent.Map(Base, 16 * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using (Cpu cpu = parent.AttachCpu())
        {
            Fill(cpu, a, 16);
        }
        Assert.Equal(16 * Page, group.UsageBytes);
        AddressSpace child = parent.Fork();
        Assert.Same(group, child.MemoryGroup);
        // Shared pages are charged once, to whoever paid first.
        Assert.Equal(16 * Page, group.UsageBytes);
        using (Cpu cpu = child.AttachCpu())
        {
            for (int i = 0; i < 4; i++)
            {
                cpu.Store(a + (ulong)(i * Page) + 8, 1L);
            }
            Verify(cpu, a, 16);
        }
        Assert.Equal(20 * Page, group.UsageBytes);
        child.Dispose();
        Assert.Equal(16 * Page, group.UsageBytes);
        // The parent's writes reuse its now exclusive pages: nothing more is charged.
        using (Cpu cpu = parent.AttachCpu())
        {
            cpu.Store(a + 8, 2L);
        }
        Assert.Equal(16 * Page, group.UsageBytes);
        parent.Dispose();
        Assert.Equal(0, group.UsageBytes);
    }

    [Fact]
    public void AChildForkedIntoASiblingGroupPaysForItsCopiesThere()
    {
        using AddressSpace parent = NewSpace(limitPages: 256);
        ulong a = parent.Map(Base, 8 * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = parent.AttachCpu();
        Fill(cpu, a, 8);
        MemoryGroup sibling = MemoryGroup.Create(parent, 64 * Page);
        using AddressSpace child = parent.Fork(sibling);
        using Cpu childCpu = child.AttachCpu();
        for (int i = 0; i < 8; i++)
        {
            childCpu.Store(a + (ulong)(i * Page) + 8, 5L);
        }
        Assert.Equal(8 * Page, parent.MemoryGroup!.UsageBytes);
        Assert.Equal(8 * Page, sibling.UsageBytes);
        Verify(cpu, a, 8);
    }

    [Fact]
    public void PagedOutPagesAreUnchargedAndSwapInChargesTheFaultingGroup()
    {
        using AddressSpace space = NewSpace(limitPages: 64, swap: true);
        MemoryGroup group = space.MemoryGroup!;
        ulong a = space.Map(Base, 16 * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 16);
        space.Advise(a, 16 * (ulong)Page, Advice.PageOut);
        Assert.Equal(0, group.UsageBytes);
        Assert.Equal(16, group.ReadStat()["pswpout"]);
        Verify(cpu, a, 16);
        Assert.Equal(16 * Page, group.UsageBytes);
        Assert.Equal(16, group.ReadStat()["workingset_refault_anon"]);
        space.Unmap(a, 16 * (ulong)Page);
        Assert.Equal(0, group.UsageBytes);
    }

    [Fact]
    public void SharedMemoryIsChargedOnceToTheFirstGroupThatMapsIt()
    {
        using AddressSpace space = NewSpace(limitPages: 64);
        MemoryGroup group = space.MemoryGroup!;
        ulong a = space.Map(0, 8 * (ulong)Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 8);
        Assert.Equal(8 * Page, group.UsageBytes);
        Assert.Equal(8 * Page, group.ReadStat()["shmem"]);
        Assert.Equal(8 * Page, group.ReadStat()["file"]);
        using (AddressSpace child = space.Fork(MemoryGroup.Create(space, 64 * Page)))
        using (Cpu childCpu = child.AttachCpu())
        {
            Verify(childCpu, a, 8);
            Assert.Equal(0, child.MemoryGroup!.UsageBytes);
        }
        Assert.Equal(8 * Page, group.UsageBytes);
        space.Unmap(a, 8 * (ulong)Page);
        Assert.Equal(0, group.UsageBytes);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void OverTheLimitWithoutSwapTheAccessFailsAsOutOfMemory(FaultPath path)
    {
        using AddressSpace space = NewSpace(limitPages: 8, path);
        MemoryGroup group = space.MemoryGroup!;
        ulong a = space.Map(Base, 16 * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        Fill(cpu, a, 8);
        Assert.Equal(AccessOutcome.OutOfMemory, cpu.TryStore(a + 8 * (ulong)Page, 1L));
        Assert.Throws<GuestOutOfMemoryException>(() => cpu.Store(a + 9 * (ulong)Page, 1L));
        Assert.Equal(8 * Page, group.UsageBytes);
        Assert.Equal(2, group.OomEvents);
        Assert.Equal(2, group.OomKillEvents);
        Assert.True(group.MaxEvents >= 2);
        Assert.Equal(2, space.GetCounters()[VmCounters.OomKill]);
        Assert.Equal(new Dictionary<string, long> { ["max"] = group.MaxEvents, ["oom"] = 2, ["oom_kill"] = 2 }, group.ReadEvents());
        // Populate answers ENOMEM; the charged pages are all still there, and no OOM state is left on the Cpu.
        Assert.Equal(Errno.ENOMEM, space.TryAdvise(a + 8 * (ulong)Page, 8 * (ulong)Page, Advice.PopulateWrite));
        Verify(cpu, a, 8);
        Assert.Null(cpu.FaultState.Memcg.Group);
        Assert.False(cpu.FaultState.Memcg.Enabled);
        // Room made elsewhere in the group lets the next access through.
        space.Unmap(a, (ulong)Page);
        cpu.Store(a + 8 * (ulong)Page, 1L);
        Assert.Equal(8 * Page, group.UsageBytes);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void OverTheLimitWithSwapTheGroupReclaimsItsOwnPages(FaultPath path)
    {
        using AddressSpace space = NewSpace(limitPages: 16, path, swap: true);
        MemoryGroup group = space.MemoryGroup!;
        const int pages = 64;
        ulong a = space.Map(Base, pages * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        Fill(cpu, a, pages);
        Verify(cpu, a, pages);
        Assert.True(group.UsageBytes <= 16 * Page);
        Assert.Equal(16 * Page, group.PeakBytes);
        Assert.Equal(0, group.OomEvents);
        IReadOnlyDictionary<string, long> stat = group.ReadStat();
        Assert.True(stat["pgscan"] > 0 && stat["pgsteal"] > 0 && stat["pswpout"] > 0, string.Join(", ", stat));
        Assert.True(stat["workingset_refault_anon"] > 0);
        Assert.Equal(0, space.PoisonViolations);
        space.Unmap(a, pages * (ulong)Page);
        Assert.Equal(0, group.UsageBytes);
    }

    [Fact]
    public void ReclaimUnderAGroupsLimitTakesNoPageOfAnotherGroup()
    {
        using AddressSpace parent = NewSpace(limitPages: 1024, swap: true);
        ulong mine = parent.Map(Base, 32 * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = parent.AttachCpu();
        Fill(cpu, mine, 32);
        MemoryGroup small = MemoryGroup.Create(parent, 16 * Page);
        using AddressSpace child = parent.Fork(small);
        ulong theirs = child.Map(0, 128 * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using Cpu childCpu = child.AttachCpu();
        Fill(childCpu, theirs, 128);
        Verify(childCpu, theirs, 128);
        // The child's group paged its own pages out; every page of the parent's group stayed.
        Assert.Equal(32, parent.CountResidentPages(mine, mine + 32 * (ulong)Page));
        Assert.Equal(32 * Page, parent.MemoryGroup!.UsageBytes);
        Assert.Equal(0, parent.MemoryGroup.ReadStat()["pswpout"]);
        Assert.True(small.ReadStat()["pswpout"] > 0);
        Assert.True(small.UsageBytes <= 16 * Page);
        Verify(cpu, mine, 32);
    }

    [Fact]
    public void LoweringTheLimitReclaimsFromTheGroup()
    {
        using AddressSpace space = NewSpace(limitPages: null, swap: true);
        Assert.Null(space.MemoryGroup);
        MemoryGroup group = MemoryGroup.Create(space);
        using AddressSpace child = space.Fork(group);
        ulong a = child.Map(Base, 32 * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = child.AttachCpu();
        Fill(cpu, a, 32);
        Assert.Equal(32 * Page, group.UsageBytes);
        group.LimitBytes = 8 * Page + 100;
        Assert.Equal(8 * Page, group.LimitBytes);
        Assert.True(group.UsageBytes <= 8 * Page, $"{group.UsageBytes}");
        Assert.Equal(0, group.OomEvents);
        Verify(cpu, a, 32);
        group.LimitBytes = null;
        Assert.Null(group.LimitBytes);
    }

    [Fact]
    public void LoweringTheLimitWithNothingReclaimableCountsOomAndStillHolds()
    {
        using AddressSpace space = NewSpace(limitPages: 64);
        MemoryGroup group = space.MemoryGroup!;
        ulong a = space.Map(Base, 16 * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 8);
        group.LimitBytes = 4 * Page;
        Assert.Equal(4 * Page, group.LimitBytes);
        Assert.Equal(1, group.OomEvents);
        Assert.Equal(8 * Page, group.UsageBytes);
        Verify(cpu, a, 8);
        Assert.Equal(AccessOutcome.OutOfMemory, cpu.TryStore(a + 8 * (ulong)Page, 1L));
    }

    [Fact]
    public void TheOutOfMemoryHandlerMayRaiseTheLimitAndHaveTheAccessRetried()
    {
        using AddressSpace space = NewSpace(limitPages: 4);
        MemoryGroup group = space.MemoryGroup!;
        int calls = 0;
        group.OutOfMemoryHandler = g =>
        {
            calls++;
            g.LimitBytes += 4 * Page;
            return true;
        };
        ulong a = space.Map(Base, 32 * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 16);
        Verify(cpu, a, 16);
        Assert.Equal(3, calls);
        Assert.Equal(3, group.OomEvents);
        Assert.Equal(0, group.OomKillEvents);
        Assert.Equal(16 * Page, group.LimitBytes);

        group.OutOfMemoryHandler = _ => false;
        Assert.Equal(AccessOutcome.OutOfMemory, cpu.TryStore(a + 16 * (ulong)Page, 1L));
        Assert.Equal(1, group.OomKillEvents);
    }

    [Fact]
    public void AFilesPagesAreChargedToTheFirstMapperAndUnchargedWhenTheFileDropsThem()
    {
        using AddressSpace space = NewSpace(limitPages: 64);
        MemoryGroup group = space.MemoryGroup!;
        using var file = new MemoryFile(space, "charged");
        file.Truncate(8 * Page);
        ulong a = space.Map(0, 8 * (ulong)Page, Protection.ReadWrite, MapFlags.Shared, file, 0);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 8);
        Assert.Equal(8 * Page, group.UsageBytes);
        // The page cache outlives the mapping, and so does its charge (as on Linux).
        space.Unmap(a, 8 * (ulong)Page);
        Assert.Equal(8 * Page, group.UsageBytes);
        file.Truncate(0);
        Assert.Equal(0, group.UsageBytes);
    }

    [Fact]
    public void AHugePageIsChargedWholeAndFallsBackToSmallPagesWhenItDoesNotFit()
    {
        const ulong Pmd = 2 << 20;
        using var space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = FaultPath.VmaLock,
            PhysicalMemoryBytes = 32 << 20,
            MemoryLimitBytes = 1024 * Page,
            TransparentHugePages = TransparentHugePageMode.Always,
        });
        MemoryGroup group = space.MemoryGroup!;
        ulong a = space.Map(0x4000_0000, 2 * Pmd, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1L);
        Assert.Equal(512 * Page, group.UsageBytes);
        Assert.Equal(1, space.GetCounters()[VmCounters.ThpFaultAlloc]);
        group.LimitBytes = 600 * Page;
        cpu.Store(a + Pmd, 2L);
        // 512 more would pass the limit: the fault took one 4 KiB page instead (thp_fault_fallback_charge).
        Assert.Equal(513 * Page, group.UsageBytes);
        Assert.Equal(1, space.GetCounters()[VmCounters.ThpFaultFallback]);
        Assert.Equal(0, group.OomEvents);
        space.Unmap(a, 2 * Pmd);
        Assert.Equal(0, group.UsageBytes);
    }

    [Fact]
    public void TheOutOfMemoryHandlerMayUnmapAMembersMemoryToMakeRoom()
    {
        using AddressSpace space = NewSpace(limitPages: 8);
        MemoryGroup group = space.MemoryGroup!;
        ulong cache = space.Map(0, 8 * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        ulong a = space.Map(0, 8 * (ulong)Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, cache, 8);
        group.OutOfMemoryHandler = _ =>
        {
            // A guest's own OOM policy: drop its cache.
            return space.TryAdvise(cache, 8 * (ulong)Page, Advice.DontNeed) == Errno.None;
        };
        Fill(cpu, a, 8);
        Verify(cpu, a, 8);
        Assert.Equal(1, group.OomEvents);
        Assert.Equal(0, group.OomKillEvents);
        Assert.Equal(8 * Page, group.UsageBytes);
    }

    [Fact]
    public void BadInputGetsLinuxErrnosAndChangesNothing()
    {
        using AddressSpace space = NewSpace(limitPages: 16);
        MemoryGroup group = space.MemoryGroup!;
        var error = Assert.Throws<MemoryOperationException>(() => group.LimitBytes = -1);
        Assert.Equal(Errno.EINVAL, error.Error);
        Assert.Equal(16 * Page, group.LimitBytes);
        Assert.Equal(Errno.EINVAL, Assert.Throws<MemoryOperationException>(() => MemoryGroup.Create(space, -Page)).Error);
        Assert.Throws<ArgumentOutOfRangeException>(() => new AddressSpace(new FaultlineOptions { MemoryLimitBytes = -1 }));

        using AddressSpace stranger = NewSpace(limitPages: 16);
        Assert.Equal(Errno.EINVAL, Assert.Throws<MemoryOperationException>(() => space.Fork(stranger.MemoryGroup!)).Error);
        Assert.Throws<ArgumentNullException>(() => space.Fork(null!));
        Assert.Throws<ArgumentNullException>(() => MemoryGroup.Create(null!));

        // The RAM has room for a limited number of groups (its own lists and 62 more besides this one's).
        var made = new List<MemoryGroup>();
        MemoryOperationException? full = null;
        for (int i = 0; i < 100 && full is null; i++)
        {
            try
            {
                made.Add(MemoryGroup.Create(space));
            }
            catch (MemoryOperationException e)
            {
                full = e;
            }
        }
        Assert.Equal(Errno.ENOSPC, full?.Error);
        Assert.Equal(62, made.Count);

        space.Dispose();
        Assert.Throws<ObjectDisposedException>(() => MemoryGroup.Create(space));
        Assert.Throws<ObjectDisposedException>(() => space.Fork(group));
        // A limit write on a group whose RAM is gone only stores the limit.
        group.LimitBytes = 0;
        Assert.Equal(0, group.LimitBytes);
    }
}
