using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// The fork races of the SPF review (v2, 2017-08: <c>copy_page_range()</c> against a speculative fault), staged with
/// probe points: a speculative fault and a speculative page-table install before, during and after the copy, faults
/// on the scalable paths while the fork holds the parent, two copy-on-write faults on one shared frame, and munmap or
/// mprotect racing a fork. Each ends with the child holding no writable view of a parent frame, the parent losing
/// nothing, and no frame or table leaked.
/// </summary>
public sealed class ForkRaceTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong PmdSpan = PageGeometry.PmdSize;
    private const ulong Base = 0x4000_0000;

    private static AddressSpace NewSpace(FaultPath path) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 32 << 20 });

    // The region spans two PMDs; the first page is written so the VMA has an anon_vma and the first PTE table exists
    // (a speculative fault needs both), the second PMD has no table yet.
    private static (AddressSpace Space, Cpu Faulter, Cpu Other, ulong Start) Prepared(FaultPath path)
    {
        AddressSpace space = NewSpace(path);
        ulong a = MapFixed(space, Base, 2 * PmdSpan);
        Cpu faulter = space.AttachCpu();
        Cpu other = space.AttachCpu();
        other.Store(a, 1L);
        return (space, faulter, other, a);
    }

    // A thread that stores a value through the given Cpu, for a probe gate to stop.
    private static ThreadRunner<bool> StoreOn(string role, Cpu cpu, ulong address, long value) =>
        ThreadRole.Run(role, () =>
        {
            cpu.Store(address, value);
            return true;
        });

    // Detaches the parent's Cpus, checks that it holds just its pages and its tables (no leak, no stray reference
    // from the race), and disposes it.
    private static void TearDown(AddressSpace parent, Cpu faulter, Cpu other, long pages)
    {
        faulter.Dispose();
        other.Dispose();
        Assert.Equal(pages + parent.PageTablePages, parent.FramesInUse);
        parent.Dispose();
    }

    [Fact]
    public void SpeculativeFaultValidatedBeforeForkInstallsAfterItOnlyInTheParent()
    {
        (AddressSpace parent, Cpu faulter, Cpu other, ulong a) = Prepared(FaultPath.Speculative);
        ulong target = a + Page;
        Dictionary<string, long> before = Counters(parent);
        AddressSpace child;
        ThreadRunner<bool> fault;
        using (var gate = new ProbeGate(parent, ProbePoint.AnonymousBeforePteLock, ThreadRole.Is("faulter")))
        {
            fault = StoreOn("faulter", faulter, target, 42L);
            gate.WaitArrived();
            // The fault holds a zeroed frame and has validated the VMA; the fork copies and flushes meanwhile.
            child = parent.Fork();
            gate.Release();
        }
        fault.Join();

        Assert.Equal(42L, other.Load<long>(target));
        using (Cpu childCpu = child.AttachCpu())
        {
            Assert.False(child.IsResident(target));
            Assert.Equal(0L, childCpu.Load<long>(target));
            Assert.Equal(1L, childCpu.Load<long>(a));
        }
        // pte_map_lock saw the sequence the fork moved and handed the fault to the classic path, frame given back.
        Assert.True(Delta(before, parent, "spf_vma_changed") + Delta(before, parent, "spf_pte_lock") >= 1);
        Assert.True(Delta(before, parent, "spf_fallback") >= 1);
        child.Dispose();
        TearDown(parent, faulter, other, pages: 2);
    }

    [Theory]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void ScalablePathFaultDuringTheCopyWaitsForTheForkAndIsNotInTheChild(FaultPath path)
    {
        (AddressSpace parent, Cpu faulter, Cpu other, ulong a) = Prepared(path);
        ulong target = a + 2 * Page;
        ThreadRunner<AddressSpace> fork;
        ThreadRunner<bool> fault;
        using (var gate = new ProbeGate(parent, ProbePoint.ForkBeforeVmaCopy, ThreadRole.Is("fork")))
        {
            fork = ThreadRole.Run("fork", parent.Fork);
            gate.WaitArrived();
            // The parent's VMA is write-locked with its sequence open: neither scalable path may handle the fault.
            fault = StoreOn("faulter", faulter, target, 7L);
            ThreadRole.WaitUntil(() => Counters(parent)[path == FaultPath.Speculative ? "spf_fallback" : VmCounters.VmaLockAbort] > 0
                || Counters(parent)[VmCounters.VmaLockRetry] > 0, "the fault to leave the scalable path");
            Assert.False(fault.IsDone);
            gate.Release();
        }
        AddressSpace child = fork.Join();
        fault.Join();

        Assert.Equal(7L, other.Load<long>(target));
        Assert.False(child.IsResident(target));
        child.Dispose();
        TearDown(parent, faulter, other, pages: 2);
    }

    [Fact]
    public void TableInstalledSpeculativelyDuringTheCopyStaysTheParentsAndIsFreedWithIt()
    {
        (AddressSpace parent, Cpu faulter, Cpu other, ulong a) = Prepared(FaultPath.Speculative);
        ulong target = a + PmdSpan;
        int tablesBefore = parent.PageTablePages;
        ThreadRunner<bool> fault;
        ThreadRunner<AddressSpace> fork;
        using (var install = new ProbeGate(parent, ProbePoint.SpeculativeTableInstallLocked, ThreadRole.Is("faulter")))
        using (var flush = new ProbeGate(parent, ProbePoint.ForkBeforeFlush, ThreadRole.Is("fork")))
        {
            fault = StoreOn("faulter", faulter, target, 9L);
            // The fault validated the VMA under page_table_lock and is about to hook a new PTE table.
            install.WaitArrived();
            fork = ThreadRole.Run("fork", parent.Fork);
            // The copy passed the empty PMD slot and stopped before the flush.
            flush.WaitArrived();
            install.Release();
            ThreadRole.WaitUntil(() => parent.PageTablePages == tablesBefore + 1, "the speculative table to be hooked");
            flush.Release();
        }
        AddressSpace child = fork.Join();
        fault.Join();

        Assert.Equal(9L, other.Load<long>(target));
        Assert.False(child.IsResident(target));
        // The child's tables: the root and one chain down to the first PMD's PTE table.
        Assert.Equal(4, child.PageTablePages);
        child.Dispose();
        parent.Unmap(a + PmdSpan, PmdSpan);
        Assert.Equal(tablesBefore, parent.PageTablePages);
        TearDown(parent, faulter, other, pages: 1);
    }

    [Fact]
    public void TableInstalledSpeculativelyBeforeTheCopyIsCopiedEmptyAndTheFaultRetries()
    {
        (AddressSpace parent, Cpu faulter, Cpu other, ulong a) = Prepared(FaultPath.Speculative);
        ulong target = a + PmdSpan;
        AddressSpace child;
        ThreadRunner<bool> fault;
        using (var gate = new ProbeGate(parent, ProbePoint.AnonymousBeforePteLock, ThreadRole.Is("faulter")))
        {
            fault = StoreOn("faulter", faulter, target, 11L);
            // The new table is hooked (empty) and the frame zeroed; the PTE is not there yet.
            gate.WaitArrived();
            child = parent.Fork();
            gate.Release();
        }
        fault.Join();

        Assert.Equal(11L, other.Load<long>(target));
        Assert.False(child.IsResident(target));
        // The child got the empty table too (copy_page_range copies every populated table) and frees it with the range.
        Assert.Equal(5, child.PageTablePages);
        child.Unmap(a + PmdSpan, PmdSpan);
        Assert.Equal(4, child.PageTablePages);
        child.Dispose();
        TearDown(parent, faulter, other, pages: 2);
    }

    [Fact]
    public void SpeculativeTableInstallValidatedBeforeTheForkGivesUpAfterIt()
    {
        (AddressSpace parent, Cpu faulter, Cpu other, ulong a) = Prepared(FaultPath.Speculative);
        ulong target = a + PmdSpan;
        int tablesBefore = parent.PageTablePages;
        AddressSpace child;
        ThreadRunner<bool> fault;
        using (var gate = new ProbeGate(parent, ProbePoint.SpeculativeBeforeTableInstall, ThreadRole.Is("faulter")))
        {
            fault = StoreOn("faulter", faulter, target, 13L);
            gate.WaitArrived();
            child = parent.Fork();
            gate.Release();
        }
        fault.Join();

        // The install re-checked the VMA under page_table_lock, found the fork's sequence and dropped its table; the
        // classic path then built the table the fault needed.
        Assert.Equal(13L, other.Load<long>(target));
        Assert.Equal(tablesBefore + 1, parent.PageTablePages);
        Assert.False(child.IsResident(target));
        child.Dispose();
        TearDown(parent, faulter, other, pages: 2);
    }

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void ParentAndChildCopyOnWriteOfOneFrameEachGetTheirOwnCopyAndTheOldFrameIsFreed(FaultPath path)
    {
        (AddressSpace parent, Cpu faulter, Cpu other, ulong a) = Prepared(path);
        AddressSpace child = parent.Fork();
        Cpu childCpu = child.AttachCpu();
        Cpu childIdle = child.AttachCpu();
        ThreadRunner<bool> fault;
        using (var gate = new ProbeGate(parent, ProbePoint.CowCopiedBeforePteLock, ThreadRole.Is("faulter")))
        {
            fault = StoreOn("faulter", faulter, a, 2L);
            // The parent's copy is made (the old frame pinned by its reference); the child now copies the same frame.
            gate.WaitArrived();
            childCpu.Store(a, 3L);
            gate.Release();
        }
        fault.Join();

        Assert.Equal(2L, other.Load<long>(a));
        Assert.Equal(3L, childCpu.Load<long>(a));
        Assert.Equal(1, Counters(parent)["cow_fault"]);
        Assert.Equal(1, Counters(child)["cow_fault"]);
        Assert.Equal([new PageMapping(parent, a)], parent.GetPageMappings(a));
        childCpu.Dispose();
        childIdle.Dispose();
        child.Dispose();
        // The shared frame had three references (two mappings, the parent's copy); all went, so it was freed.
        TearDown(parent, faulter, other, pages: 1);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MunmapOrMprotectRacingAForkWaitsForItAndTheChildKeepsTheWholeMapping(bool protect)
    {
        (AddressSpace parent, Cpu faulter, Cpu other, ulong a) = Prepared(FaultPath.Speculative);
        other.Store(a + Page, 2L);
        ThreadRunner<AddressSpace> fork;
        ThreadRunner<bool> writer;
        using (var gate = new ProbeGate(parent, ProbePoint.ForkBeforeVmaCopy, ThreadRole.Is("fork")))
        {
            fork = ThreadRole.Run("fork", parent.Fork);
            gate.WaitArrived();
            writer = ThreadRole.Run("writer", () =>
            {
                if (protect)
                {
                    parent.Protect(a, 2 * PmdSpan, Protection.Read);
                }
                else
                {
                    parent.Unmap(a, 2 * PmdSpan);
                }
                return true;
            });
            Thread.Sleep(20);
            Assert.False(writer.IsDone);
            gate.Release();
        }
        using AddressSpace child = fork.Join();
        writer.Join();

        Assert.Equal([new MappingInfo(a, a + 2 * PmdSpan, Protection.ReadWrite, false, 0, "")], child.GetMappings());
        using Cpu childCpu = child.AttachCpu();
        Assert.Equal(1L, childCpu.Load<long>(a));
        Assert.Equal(2L, childCpu.Load<long>(a + Page));
        childCpu.Store(a, 5L);
        if (protect)
        {
            Assert.Equal(AccessOutcome.SegvAccErr, other.TryStore(a, 6L));
            Assert.Equal(1L, other.Load<long>(a));
        }
        else
        {
            Assert.Empty(parent.GetMappings());
        }
        faulter.Dispose();
        other.Dispose();
        parent.Dispose();
    }
}
