using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// Memory-group charges staged against the writers with probe gates: a speculative fault whose charge hits the limit
/// (the memcg OOM state it records is gone before the classic path runs, which charges again and succeeds once an
/// unmap made room), the same on the VMA-lock path (the record survives to the fault's end, whose reclaim finds the
/// room), and a fault stopped after charging while an unmap frees memory of the group and then its own VMA.
/// </summary>
public sealed class MemoryGroupRaceTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;
    private const string Faulter = "faulter";

    private static AddressSpace NewSpace(FaultPath path, long limitPages) => new(new FaultlineOptions
    {
        FaultPath = path,
        PhysicalMemoryBytes = 16 << 20,
        PoisonFreedFrames = true,
        MemoryLimitBytes = limitPages * (long)Page,
    });

    [Fact]
    public void ALimitHitOnTheSpeculativePathLeavesNoOomStateAndTheClassicPathHandlesIt()
    {
        using AddressSpace space = NewSpace(FaultPath.Speculative, limitPages: 2);
        MemoryGroup group = space.MemoryGroup!;
        ulong a = space.Map(Base, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        ulong room = space.Map(Base + 64 * Page, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu toucher = space.AttachCpu();
        using Cpu cpu = space.AttachCpu();
        toucher.Store(a, 1L);
        toucher.Store(room, 2L);
        Assert.Equal(2 * (long)Page, group.UsageBytes);
        long fallbacks = space.GetCounters()[VmCounters.SpeculativeFallback];

        using var threads = new ThreadScope();
        using var failed = new ProbeGate(space, ProbePoint.MemcgChargeFailed, ThreadRole.Is(Faulter));
        using var classic = new ProbeGate(space, ProbePoint.ClassicLocked, ThreadRole.Is(Faulter));
        var fault = threads.Run(Faulter, () => cpu.TryStore(a + 2 * Page, 3L));
        failed.WaitArrived();
        // mem_cgroup_oom inside the speculative handler's enabled section: the group is recorded on the Cpu.
        Assert.True(cpu.FaultState.Memcg.Enabled);
        Assert.Same(group.Charge, cpu.FaultState.Memcg.Group);
        // Room made while the speculative attempt unwinds.
        space.Unmap(room, Page);
        Assert.Equal((long)Page, group.UsageBytes);
        failed.Release();

        classic.WaitArrived();
        // The speculative attempt dropped its record and disabled its section before the classic path began.
        Assert.False(cpu.FaultState.Memcg.Enabled);
        Assert.Null(cpu.FaultState.Memcg.Group);
        classic.Release();

        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(3L, cpu.Load<long>(a + 2 * Page));
        Assert.Equal(2 * (long)Page, group.UsageBytes);
        Assert.Equal(1, group.MaxEvents);
        Assert.Equal(0, group.OomEvents);
        Assert.Equal(0, group.OomKillEvents);
        Assert.Equal(1, space.GetCounters()[VmCounters.SpeculativeMemcgCharge]);
        Assert.Equal(fallbacks + 1, space.GetCounters()[VmCounters.SpeculativeFallback]);
        Assert.Null(cpu.FaultState.Memcg.Group);
    }

    [Fact]
    public void ALimitHitUnderTheVmaLockIsKeptForTheFaultsEndWhichRetriesOnceThereIsRoom()
    {
        using AddressSpace space = NewSpace(FaultPath.VmaLock, limitPages: 2);
        MemoryGroup group = space.MemoryGroup!;
        ulong a = space.Map(Base, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        ulong room = space.Map(Base + 64 * Page, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1L);
        cpu.Store(room, 2L);

        using var threads = new ThreadScope();
        using var failed = new ProbeGate(space, ProbePoint.MemcgChargeFailed, ThreadRole.Is(Faulter));
        using var classic = new ProbeGate(space, ProbePoint.ClassicLocked, ThreadRole.Is(Faulter));
        var fault = threads.Run(Faulter, () => cpu.TryStore(a + 2 * Page, 3L));
        failed.WaitArrived();
        Assert.True(cpu.FaultState.Memcg.Enabled);
        Assert.Same(group.Charge, cpu.FaultState.Memcg.Group);
        // Another VMA's page goes (the faulting VMA is read-locked by the stopped fault).
        space.Unmap(room, Page);
        failed.Release();

        // The handler's VM_FAULT_OOM kept the record; the fault's end took it, found room under the limit without
        // reclaiming, and refaulted on the classic path.
        classic.WaitArrived();
        Assert.Null(cpu.FaultState.Memcg.Group);
        Assert.False(cpu.FaultState.Memcg.Enabled);
        classic.Release();
        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(3L, cpu.Load<long>(a + 2 * Page));
        Assert.Equal(1, group.MaxEvents);
        Assert.Equal(0, group.OomEvents);
        Assert.Equal(2 * (long)Page, group.UsageBytes);
    }

    [Fact]
    public void AnUnmapWhileAFaultHoldsAFreshChargeNeitherLeaksNorDoublesIt()
    {
        using AddressSpace space = NewSpace(FaultPath.Speculative, limitPages: 4);
        MemoryGroup group = space.MemoryGroup!;
        ulong a = space.Map(Base, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        ulong b = space.Map(Base + 64 * Page, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu toucher = space.AttachCpu();
        using Cpu cpu = space.AttachCpu();
        toucher.Store(a, 1L);
        toucher.Store(b, 2L);
        toucher.Store(b + Page, 3L);
        Assert.Equal(3 * (long)Page, group.UsageBytes);

        using var threads = new ThreadScope();
        using var charged = new ProbeGate(space, ProbePoint.AnonymousBeforePteLock, ThreadRole.Is(Faulter));
        var fault = threads.Run(Faulter, () => cpu.TryStore(a + 3 * Page, 4L));
        charged.WaitArrived();
        // The stopped fault's frame is charged: the group is at its limit.
        Assert.Equal(4 * (long)Page, group.UsageBytes);
        Assert.Equal(AccessOutcome.OutOfMemory, toucher.TryStore(b + 2 * Page, 5L));
        // Frees of the group's other pages uncharge them while the charge is held...
        space.Unmap(b, 8 * Page);
        Assert.Equal(2 * (long)Page, group.UsageBytes);
        // ...and removing the fault's own VMA makes it give back its unpublished, charged frame.
        space.Unmap(a, 8 * Page);
        Assert.Equal((long)Page, group.UsageBytes);
        charged.Release();

        Assert.Equal(AccessOutcome.SegvMapErr, fault.Join());
        Assert.Equal(0, group.UsageBytes);
        Assert.Null(cpu.FaultState.Memcg.Group);
        cpu.Dispose();
        toucher.Dispose();
        Assert.Equal(0, group.UsageBytes);
        Assert.Equal(0, space.PoisonViolations);
    }
}
