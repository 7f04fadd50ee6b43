using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// Deterministic races of host memory against munmap: a fault stopped with the host page in hand before the PTE lock,
/// and a Cpu stopped inside its read section between the lockless walk and the TLB fill. In every interleaving a
/// store either lands in the host buffer before the unmap returns or fails; once the unmap returned, no Cpu reaches
/// the buffer (the entries are cleared under their locks, the TLB generation bumped, and the grace period waited for
/// every access that translated through them).
/// </summary>
public sealed class HostMemoryRaceTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;
    private const int Pages = 4;
    private const string Faulter = "faulter";
    private const string Writer = "writer";

    private static AddressSpace NewSpace(FaultPath path) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });

    private static ulong MapHost(AddressSpace space, HostBuffer buffer) =>
        space.MapHostMemory(Base, (ulong)buffer.Length, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, buffer.Address);

    [Fact]
    public void ASpeculativeFaultStoppedBeforeThePteLockLosesToTheUnmap()
    {
        using var buffer = new HostBuffer(Pages);
        using AddressSpace space = NewSpace(FaultPath.Speculative);
        ulong a = MapHost(space, buffer);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        // Builds the page tables, so the stopped fault is a speculative one that reached the PTE.
        other.Store(a + Page, 1L);

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.HostFaultBeforePteLock, ThreadRole.Is(Faulter));
        ThreadRunner<AccessOutcome> fault = threads.Run(Faulter, () => cpu.TryStore(a, 42L));
        gate.WaitArrived();
        // The speculative fault holds no lock: the unmap runs to its end while it is stopped.
        ThreadRunner<Errno> unmap = threads.Run(Writer, () => space.TryUnmap(a, Pages * Page));
        Assert.Equal(Errno.None, unmap.Join());

        gate.Release();
        // pte_map_lock sees the VMA changed; the retry on the classic path finds nothing mapped.
        Assert.Equal(AccessOutcome.SegvMapErr, fault.Join());
        Assert.Equal(0L, buffer[0]);
        Assert.Equal(1L, buffer[(int)Page]);
        Assert.Equal(AccessOutcome.SegvMapErr, other.TryStore(a + Page, 2L));
        Assert.Equal(1L, buffer[(int)Page]);
    }

    [Fact]
    public void AVmaLockFaultStoppedBeforeThePteLockHoldsTheUnmapBackAndIsZappedAfter()
    {
        using var buffer = new HostBuffer(Pages);
        using AddressSpace space = NewSpace(FaultPath.VmaLock);
        ulong a = MapHost(space, buffer);
        using Cpu cpu = space.AttachCpu();

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.HostFaultBeforePteLock, ThreadRole.Is(Faulter));
        using var writerWaits = new ProbeGate(space, ProbePoint.VmaWriterWaiting, ThreadRole.Is(Writer));
        ThreadRunner<AccessOutcome> fault = threads.Run(Faulter, () => cpu.TryStore(a, 42L));
        gate.WaitArrived();
        ThreadRunner<Errno> unmap = threads.Run(Writer, () => space.TryUnmap(a, Pages * Page));
        // vma_start_write waits for the fault's read lock on the VMA.
        writerWaits.WaitArrived();
        writerWaits.Release();
        Assert.False(unmap.IsDone);

        gate.Release();
        // The fault installs the host page and the store lands, before the unmap returns; the unmap then zaps it.
        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(Errno.None, unmap.Join());
        Assert.Equal(42L, buffer[0]);
        Assert.False(space.IsResident(a));
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryStore(a, 43L));
        Assert.Equal(42L, buffer[0]);
    }

    [Fact]
    public void AClassicFaultStoppedBeforeThePteLockEndsBeforeTheUnmapZaps()
    {
        using var buffer = new HostBuffer(Pages);
        using AddressSpace space = NewSpace(FaultPath.MmapLock);
        ulong a = MapHost(space, buffer);
        using Cpu cpu = space.AttachCpu();

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.HostFaultBeforePteLock, ThreadRole.Is(Faulter));
        ThreadRunner<AccessOutcome> fault = threads.Run(Faulter, () => cpu.TryStore(a, 42L));
        gate.WaitArrived();
        Assert.True(space.Descriptor.MmapLock.IsLocked, "the classic fault holds the mmap read lock");
        ThreadRunner<Errno> unmap = threads.Run(Writer, () => space.TryUnmap(a, Pages * Page));

        gate.Release();
        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(Errno.None, unmap.Join());
        Assert.Equal(42L, buffer[0]);
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryStore(a, 43L));
        Assert.Equal(42L, buffer[0]);
    }

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void ATlbFillStoppedInsideItsReadSectionHoldsTheUnmapUntilItsAccessEnds(FaultPath path)
    {
        using var buffer = new HostBuffer(Pages);
        using AddressSpace space = NewSpace(path);
        ulong a = MapHost(space, buffer);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        // The entry exists: the stopped Cpu's access is a TLB miss that the lockless walk resolves, with no fault.
        other.Store(a, 1L);

        using var threads = new ThreadScope();
        using var fill = new ProbeGate(space, ProbePoint.TlbFillBeforeInsert, ThreadRole.Is(Faulter));
        using var flushed = new ProbeGate(space, ProbePoint.GatherBeforeGracePeriod, ThreadRole.Is(Writer));
        ThreadRunner<AccessOutcome> access = threads.Run(Faulter, () => cpu.TryStore(a, 42L));
        fill.WaitArrived();
        Assert.True(cpu.IsInReadSection);

        ThreadRunner<Errno> unmap = threads.Run(Writer, () => space.TryUnmap(a, Pages * Page));
        flushed.WaitArrived();
        // The entry is gone and the generation about to move; the grace period must wait for the stopped access.
        Assert.False(Paging.Pte.MapsFrame(space.Descriptor.PageTable.Lookup(a, space.Descriptor.Probes)));
        flushed.Release();
        Thread.Sleep(50);
        Assert.False(unmap.IsDone, "the unmap returned while an access that translated through the entry was in flight");

        fill.Release();
        // The access translated before the unmap returned: its store lands, through the translation it cached.
        Assert.Equal(AccessOutcome.Ok, access.Join());
        Assert.Equal(Errno.None, unmap.Join());
        Assert.Equal(42L, buffer[0]);
        // After the return the cached translation is dead: the next access flushes the TLB and finds nothing.
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryStore(a, 43L));
        Assert.Equal(AccessOutcome.SegvMapErr, other.TryLoad(a, out long _));
        Assert.Equal(42L, buffer[0]);
    }
}
