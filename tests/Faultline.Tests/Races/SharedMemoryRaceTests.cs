using Faultline.Backing;
using Faultline.Concurrency;
using Faultline.Physical;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// Deterministic races of a fault on shared anonymous memory: the fault holds the object's page (looked up or just
/// allocated, referenced for the fault) and is stopped before the PTE lock while another Cpu (a) faults the same page
/// in through a forked child, (b) unmaps it, (c) punches a hole over it. Each ends with one frame per page, the right
/// contents and no frame left behind.
/// </summary>
public sealed class SharedMemoryRaceTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    private static AddressSpace NewSpace(FaultPath path, int faultAroundBytes = 64 << 10) =>
        new(new FaultlineOptions
        {
            FaultPath = path, PhysicalMemoryBytes = 16 << 20, PoisonFreedFrames = true, FaultAroundBytes = faultAroundBytes,
        });

    private static ulong MapShared(AddressSpace space, int pages) =>
        space.Map(Base, (ulong)pages * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);

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

    private static long FrameAt(AddressSpace space, ulong address) =>
        Paging.Pte.Frame(space.Descriptor.PageTable.Lookup(address, space.Descriptor.Probes));

    [Theory]
    [MemberData(nameof(Paths))]
    public void AFaultStoppedWithANewPageAndTheChildsFaultOnItMapOneFrame(FaultPath path)
    {
        using AddressSpace parent = NewSpace(path);
        ulong a = MapShared(parent, 4);
        using Cpu parentCpu = parent.AttachCpu();
        using Cpu parentIdle = parent.AttachCpu();
        // Builds the page tables, so the stopped fault below reaches the PTE on every path.
        parentCpu.Store(a + Page, 1L);
        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();

        ThreadRunner<long> writer;
        using (var gate = new ProbeGate(parent, ProbePoint.BackingFaultBeforePteLock, ThreadRole.Is("writer")))
        {
            writer = ThreadRole.Run("writer", () =>
            {
                parentCpu.Store(a, 42L);
                return parentCpu.Load<long>(a);
            });
            gate.WaitArrived();
            // The parent's fault inserted the page and holds a reference on it; the child finds the same page.
            Assert.Equal(0L, childCpu.Load<long>(a));
            gate.Release();
        }

        Assert.Equal(42L, writer.Join());
        Assert.Equal(42L, childCpu.Load<long>(a));
        long pfn = FrameAt(parent, a);
        Assert.Equal(pfn, FrameAt(child, a));
        // The object's reference and one per mapping; the fault's own became its mapping's.
        Assert.Equal(3, parent.Descriptor.Memory.Info(pfn).RefCount);
        Assert.Equal(2, parent.Descriptor.Memory.Info(pfn).MapCount);
        Assert.Equal(2, ShmemFrames(parent));
        Assert.Equal(2, parent.ResidentPages);
    }

    [Fact]
    public void ASpeculativeFaultStoppedWithANewPageWhileTheMappingGoesLeavesNothing()
    {
        using AddressSpace space = NewSpace(FaultPath.Speculative);
        ulong a = MapShared(space, 4);
        using Cpu faulter = space.AttachCpu();
        using Cpu unmapper = space.AttachCpu();
        faulter.Store(a + Page, 1L);
        Dictionary<string, long> before = Counters(space);

        ThreadRunner<AccessOutcome> fault;
        using (var gate = new ProbeGate(space, ProbePoint.BackingFaultBeforePteLock, ThreadRole.Is("faulter")))
        {
            fault = ThreadRole.Run("faulter", () => faulter.TryStore(a, 7L));
            gate.WaitArrived();
            SharedMemoryObject shmem = (SharedMemoryObject)space.Descriptor.Tree.FindFirstEndingAbove(a)!.Backing;
            Assert.Equal(2, shmem.CachedPages);
            // The last VMA goes: the object drops its pages; the stopped fault's reference keeps its page alive.
            space.Unmap(a, 4 * Page);
            Assert.Equal(0, shmem.CachedPages);
            Assert.Equal(1, ShmemFrames(space));
            gate.Release();
        }

        // pte_map_lock sees the VMA changed; the classic retry finds no VMA.
        Assert.Equal(AccessOutcome.SegvMapErr, fault.Join());
        Assert.True(Delta(before, space, "spf_vma_changed") > 0);
        Assert.Equal(0, ShmemFrames(space));
        Assert.Equal(0, space.ResidentPages);
        Assert.Equal(0, space.PoisonViolations);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AFaultStoppedWithACachedPageWhileAHoleIsPunchedOverItMapsAZeroPage(FaultPath path)
    {
        // Without fault-around: a read of a cached page would be mapped by the window and never reach finish_fault.
        using AddressSpace space = NewSpace(path, faultAroundBytes: 4096);
        ulong a = MapShared(space, 4);
        using Cpu reader = space.AttachCpu();
        using Cpu puncher = space.AttachCpu();
        reader.Store(a, 99L);
        reader.Store(a + Page, 98L);
        space.Advise(a, Page, Advice.DontNeed);
        long old = FrameAt(space, a + Page);
        Dictionary<string, long> before = Counters(space);

        ThreadRunner<long> read;
        using (var gate = new ProbeGate(space, ProbePoint.BackingFaultBeforePteLock, ThreadRole.Is("reader")))
        {
            // The fault reaches finish_fault holding the cached page, which the punch then removes.
            read = ThreadRole.Run("reader", () => reader.Load<long>(a));
            gate.WaitArrived();
            space.Advise(a, Page, Advice.Remove);
            gate.Release();
        }

        // The page looked up before the hole was punched is not installed: the read sees the hole's zeros.
        Assert.Equal(0L, read.Join());
        Assert.True(Delta(before, space, "fault_race_lost") >= 1);
        Assert.Equal(98L, reader.Load<long>(a + Page));
        Assert.Equal(old, FrameAt(space, a + Page));
        Assert.Equal(2, ShmemFrames(space));
        Assert.Equal(2, space.ResidentPages);
        space.Unmap(a, 4 * Page);
        Assert.Equal(0, ShmemFrames(space));
        Assert.Equal(0, space.PoisonViolations);
    }
}
