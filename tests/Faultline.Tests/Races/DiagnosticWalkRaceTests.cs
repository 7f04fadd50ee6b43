using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// Diagnostic page-table walks (<see cref="AddressSpace.IsResident"/> and the smaps counts) against a munmap that
/// downgraded its lock to read: such a walk holds only the mmap read lock, not a read section, so the unmap's grace
/// period does not wait for it. It must walk only under VMAs of the published tree, whose tables the unmap never
/// frees, as the kernel's pagemap does.
/// </summary>
public sealed class DiagnosticWalkRaceTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x4000_0000_0000;
    private const int JoinMs = 10_000;
    private const string Writer = "writer";
    private const string Walker = "walker";

    private static AddressSpace NewPoisoningSpace() =>
        new(new FaultlineOptions { PhysicalMemoryBytes = 64 << 20, PoisonFreedFrames = true });

    private static long PteTableOf(AddressSpace space, ulong address)
    {
        Assert.Equal(WalkStatus.Ok, space.Descriptor.PageTable.WalkLockless(address, out PteLocation at, out _));
        return at.PteTable;
    }

    // The walker starts on a page of the range after the unmap published the tree without it and downgraded; if it
    // walks at all, it stops holding the PTE table the unmap then frees and poisons. Resumed, it must answer "not
    // resident", not read the poison (0x6B6B..., present bit set).
    [Fact]
    public void IsResidentInRangeBeingUnmappedAnswersNotResidentAfterItsTablesAreFreed()
    {
        using var space = NewPoisoningSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu cpu = space.AttachCpu();
        for (ulong p = a; p < a + 16 * Page; p += Page)
        {
            cpu.Store(p, (long)p);
        }
        Assert.True(space.IsResident(a + 5 * Page));
        long pteTable = PteTableOf(space, a);

        using var threads = new ThreadScope();
        using var unmapGate = new ProbeGate(space, ProbePoint.UnmapDowngraded, ThreadRole.Is(Writer));
        using var walkGate = new ProbeGate(space, ProbePoint.DiagnosticLookupAfterPmd, ThreadRole.Is(Walker));
        ThreadRunner<bool> unmap = threads.Run(Writer, () =>
        {
            space.Unmap(a, 16 * Page);
            return true;
        });
        unmapGate.WaitArrived();
        Assert.Equal(0, space.MapCount);
        Assert.True(mm.MmapLock.IsLocked && !mm.MmapLock.IsWriteLocked, "staging: the unmap holds the downgraded read lock");

        ThreadRunner<bool> walker = threads.Run(Walker, () => space.IsResident(a + 5 * Page));
        ThreadRole.WaitUntil(() => walkGate.HasArrived || walker.IsDone, "the walker stopped in its walk or answered");
        unmapGate.Release();
        Assert.True(unmap.Join(JoinMs));
        Assert.Equal(FrameKind.Free, mm.Memory.Info(pteTable).Kind);
        unsafe
        {
            Assert.Equal(0x6B6B_6B6B_6B6B_6B6BUL, ((ulong*)mm.Memory.FrameAddress(pteTable))[5]);
        }
        walkGate.Release();

        Assert.False(walker.Join(JoinMs), "a page of an unmapped range is not resident");
        Assert.Equal(1, space.PageTablePages);
        Assert.Equal(0, space.PoisonViolations);
    }

    // The other side of the rule: a walk under a VMA that stays mapped shares its PTE table with the range being
    // unmapped, stops inside that table, and finds it still there (the unmap frees only tables no VMA covers).
    [Fact]
    public void IsResidentNextToRangeBeingUnmappedWalksTablesTheUnmapKeeps()
    {
        using var space = NewPoisoningSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong kept = MapFixed(space, Base, 4 * Page);
        ulong removed = MapFixed(space, Base + 8 * Page, 8 * Page);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(kept + Page, 1L);
        for (ulong p = removed; p < removed + 8 * Page; p += Page)
        {
            cpu.Store(p, 2L);
        }
        long pteTable = PteTableOf(space, kept);
        Assert.Equal(pteTable, PteTableOf(space, removed));
        int tables = space.PageTablePages;

        using var threads = new ThreadScope();
        using var unmapGate = new ProbeGate(space, ProbePoint.UnmapDowngraded, ThreadRole.Is(Writer));
        using var walkGate = new ProbeGate(space, ProbePoint.DiagnosticLookupAfterPmd, ThreadRole.Is(Walker));
        ThreadRunner<bool> unmap = threads.Run(Writer, () =>
        {
            space.Unmap(removed, 8 * Page);
            return true;
        });
        unmapGate.WaitArrived();
        ThreadRunner<bool> walker = threads.Run(Walker, () => space.IsResident(kept + Page));
        walkGate.WaitArrived();
        unmapGate.Release();
        Assert.True(unmap.Join(JoinMs));
        Assert.Equal(FrameKind.PageTable, mm.Memory.Info(pteTable).Kind);
        walkGate.Release();

        Assert.True(walker.Join(JoinMs));
        Assert.Equal(tables, space.PageTablePages);
        Assert.False(space.IsResident(removed));
        Assert.False(HasPte(space, removed));
        Assert.Equal(1, space.CountResidentPages(kept, removed + 8 * Page));
        Assert.Equal(0, space.PoisonViolations);
    }

    // The reported reproduction, bounded: a writer maps, touches 4096 pages and unmaps in a loop while two threads ask
    // whether pages of the range are resident. The walks must never follow a freed (poisoned) table.
    [Fact]
    public void IsResidentDuringMapTouchUnmapLoopNeverFollowsFreedTables()
    {
        const ulong Pages = 4096;
        using var space = NewPoisoningSpace();
        var deadline = DateTime.UtcNow.AddSeconds(2);
        long cycles = 0, walks = 0, residentAnswers = 0;
        bool Running() => DateTime.UtcNow < deadline;

        using var threads = new ThreadScope();
        ThreadRunner<bool> writer = threads.Run(Writer, () =>
        {
            using Cpu cpu = space.AttachCpu();
            while (Running())
            {
                ulong a = MapFixed(space, Base, Pages * Page);
                for (ulong p = a; p < a + Pages * Page; p += Page)
                {
                    cpu.Store(p, 1L);
                }
                space.Unmap(a, Pages * Page);
                Interlocked.Increment(ref cycles);
            }
            return true;
        });
        ThreadRunner<bool>[] walkers = Enumerable.Range(0, 2).Select(w => threads.Run(Walker, () =>
        {
            var random = new Random(w);
            while (Running())
            {
                if (space.IsResident(Base + (ulong)random.Next((int)Pages) * Page))
                {
                    Interlocked.Increment(ref residentAnswers);
                }
                Interlocked.Increment(ref walks);
            }
            return true;
        })).ToArray();

        Assert.True(writer.Join(JoinMs));
        foreach (ThreadRunner<bool> walker in walkers)
        {
            Assert.True(walker.Join(JoinMs));
        }
        Assert.True(cycles > 0 && walks > 0, $"{cycles} cycles, {walks} walks");
        Assert.Equal(0, space.PoisonViolations);
        Assert.Equal(0, space.MapCount);
        Assert.Equal(1, space.PageTablePages);
        Assert.Equal(0, space.CountResidentPages(Base, Base + Pages * Page));
    }
}
