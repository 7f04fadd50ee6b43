using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// munmap frees the frames it gathered (and clears them for their next use) after it dropped the mmap lock, so other
/// threads' map and unmap calls do not wait for that work. Stopped between the unlock and the frees, it must let
/// another writer in, and a Dispose that runs meanwhile must leave the arena to it until it is done.
/// </summary>
public sealed class UnmapReleaseRaceTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x4000_0000_0000;
    private const int Pages = 64;
    private const int JoinMs = 10_000;
    private const string Writer = "writer";

    [Fact]
    public void AnotherThreadMapsAndFaultsWhileAnUnmapFreesItsFrames()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 64 << 20 });
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapFixed(space, Base, Pages * Page);
        using Cpu cpu = space.AttachCpu();
        for (ulong p = a; p < a + Pages * Page; p += Page)
        {
            cpu.Store(p, (long)p);
        }
        int framesBefore = space.FramesInUse;

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.UnmapUnlockedBeforeRelease, ThreadRole.Is(Writer));
        ThreadRunner<bool> unmap = threads.Run(Writer, () =>
        {
            space.Unmap(a, Pages * Page);
            return true;
        });
        gate.WaitArrived();
        Assert.False(mm.MmapLock.IsLocked, "the unmap frees its frames with the mmap lock dropped");
        Assert.Equal(framesBefore, space.FramesInUse);

        ulong b = space.Map(0, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        cpu.Store(b, 7L);
        Assert.Equal(7L, cpu.Load<long>(b));
        Assert.Equal(0L, cpu.Load<long>(b + Page));

        gate.Release();
        Assert.True(unmap.Join(JoinMs));
        Assert.True(space.FramesInUse <= framesBefore - Pages + 2, $"the unmapped range's frames went back ({space.FramesInUse} in use)");
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(a, out long _));
    }

    [Fact]
    public void DisposeDuringTheFreesLeavesTheArenaToTheUnmapUntilItIsDone()
    {
        var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 64 << 20 });
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapFixed(space, Base, Pages * Page);
        using (Cpu cpu = space.AttachCpu())
        {
            for (ulong p = a; p < a + Pages * Page; p += Page)
            {
                cpu.Store(p, 1L);
            }
        }

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.UnmapUnlockedBeforeRelease, ThreadRole.Is(Writer));
        ThreadRunner<bool> unmap = threads.Run(Writer, () =>
        {
            space.Unmap(a, Pages * Page);
            return true;
        });
        gate.WaitArrived();
        space.Dispose();
        Assert.Equal(1, mm.Memory.Users);

        gate.Release();
        Assert.True(unmap.Join(JoinMs));
        Assert.Equal(0, mm.Memory.Users);
    }
}
