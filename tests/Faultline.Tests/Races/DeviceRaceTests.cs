using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// A Cpu's access to a memory-mapped I/O region racing munmap of the region, staged with probe gates on each fault
/// path: an access that holds the VMA in place (stopped right before the device call) makes the unmap wait and then
/// completes against the device; one that found the VMA but holds nothing yet when the unmap runs faults with
/// SEGV_MAPERR and never reaches the device.
/// </summary>
public sealed class DeviceRaceTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x7100_0000;
    private const string Reader = "reader";
    private const string Writer = "writer";

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    public static TheoryData<FaultPath> LockFreePaths => [FaultPath.Speculative, FaultPath.VmaLock];

    private static AddressSpace NewSpace(FaultPath path) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });

    [Theory]
    [MemberData(nameof(Paths))]
    public void UnmapWaitsForAnAccessHoldingTheRegionWhichThenCompletes(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        MemoryDescriptor mm = space.Descriptor;
        var device = new RecordingDevice();
        ulong a = space.MapDevice(Base, 2 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, device, "dev");
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu(); // the speculative path runs only with more than one user
        cpu.Store(a + 8, 77L);
        device.Calls.Clear();

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.DeviceAccessLocked, ThreadRole.Is(Reader));
        ThreadRunner<long> reader = threads.Run(Reader, () => cpu.Load<long>(a + 8));
        gate.WaitArrived();
        Assert.Empty(device.Calls);

        long sleeps = mm.WriterWait.Sleeps;
        ThreadRunner<Errno> writer = threads.Run(Writer, () => space.TryUnmap(a, 2 * Page));
        if (path == FaultPath.MmapLock)
        {
            // The classic path holds the mmap read lock across the device call.
            ThreadRole.WaitUntil(() => mm.MmapLock.WritersWaiting > 0, "the unmap waits for the mmap lock");
        }
        else
        {
            // The VMA-lock and speculative paths hold the VMA read lock: vma_start_write sleeps on it.
            ThreadRole.WaitUntil(() => mm.WriterWait.Sleeps > sleeps, "the unmap sleeps on the VMA read lock");
        }
        Assert.False(writer.IsDone);
        Assert.Equal(1, space.MapCount);

        gate.Release();
        Assert.Equal(77L, reader.Join());
        Assert.Equal(Errno.None, writer.Join());
        Assert.Equal([("read", 8ul, 8, 77ul)], device.Calls.ToArray());
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(a + 8, out long _));
        Assert.Single(device.Calls);
    }

    [Theory]
    [MemberData(nameof(LockFreePaths))]
    public void AnAccessThatFoundTheRegionBeforeTheUnmapFaultsWithoutReachingTheDevice(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        var device = new RecordingDevice();
        ulong a = space.MapDevice(Base, 2 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, device, "dev");
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        cpu.Store(a + 8, 1L); // the Cpu now knows the page is a device: its next access faults only once, armed
        device.Calls.Clear();
        ProbePoint afterLookup = path == FaultPath.Speculative ? ProbePoint.SpeculativeAfterLookup : ProbePoint.VmaLockAfterLookup;

        using var threads = new ThreadScope();
        using var probes = new ProbeCounter(space.Descriptor.Probes);
        using var gate = new ProbeGate(space, afterLookup, ThreadRole.Is(Reader));
        ThreadRunner<AccessOutcome> reader = threads.Run(Reader, () => cpu.TryStore(a + 8, 2L));
        gate.WaitArrived(); // found the VMA with no lock, holds nothing yet

        Assert.Equal(Errno.None, space.TryUnmap(a, 2 * Page)); // nothing to wait for
        gate.Release();
        Assert.Equal(AccessOutcome.SegvMapErr, reader.Join());
        Assert.Empty(device.Calls);
        Assert.Equal(0, probes[ProbePoint.DeviceAccessLocked]);
    }
}
