using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// <c>clear_refs</c> against a read fault of shared memory in flight, stopped with the page in hand before the PTE
/// lock, under the flags it found before the clear (which map a shared page writable and clean). Whatever the path,
/// the page must end write-protected and clean, so the next store faults and sets the soft-dirty bit: the
/// speculative fault sees the VMA's sequence move and retries under the new flags; the VMA-lock fault holds the VMA's
/// read lock, so the clear's replacement waits for it and then write-protects what it installed; the mmap-lock fault
/// holds the mmap lock, which the clear waits for.
/// </summary>
public sealed class SoftDirtyRaceTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;
    private const string Reader = "reader";
    private const string Clearer = "clearer";

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    [Theory]
    [MemberData(nameof(Paths))]
    public void AReadFaultInFlightDuringAClearLeavesThePageWriteProtectedAndClean(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20, SoftDirty = true });
        space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);
        using Cpu reader = space.AttachCpu();
        using Cpu writer = space.AttachCpu();
        // Another page is populated so the object's page index exists; the one read below is a hole until the fault.
        writer.Store(Base + 3 * Page, 1L);

        var start = SpaceHelpers.Counters(space);
        using var threads = new ThreadScope();
        using var inHand = new ProbeGate(space, ProbePoint.BackingFaultBeforePteLock, ThreadRole.Is(Reader));
        using var waiting = path == FaultPath.VmaLock ? new ProbeGate(space, ProbePoint.VmaWriterWaiting, ThreadRole.Is(Clearer)) : null;
        var read = threads.Run(Reader, () => reader.TryLoad(Base + Page, out long _));
        inHand.WaitArrived();
        var clear = threads.Run(Clearer, () =>
        {
            space.ClearSoftDirty();
            return true;
        });
        if (path == FaultPath.Speculative)
        {
            // The speculative fault holds nothing the clear waits for: the clear finishes first.
            Assert.True(clear.Join());
        }
        else if (path == FaultPath.VmaLock)
        {
            // The clear waits for the fault's VMA read lock before it replaces the VMA.
            waiting!.WaitArrived();
            waiting.Release();
        }
        inHand.Release();
        Assert.Equal(AccessOutcome.Ok, read.Join());
        Assert.True(clear.Join());
        if (path == FaultPath.Speculative)
        {
            Assert.Equal(1, SpaceHelpers.Delta(start, space, VmCounters.SpeculativeFallback));
        }

        var entries = new ulong[1];
        space.ReadPageMap(Base + Page, entries);
        Assert.Equal(1UL << 63, entries[0] & ((1UL << 63) | (1UL << 55)));
        var before = SpaceHelpers.Counters(space);
        writer.Store(Base + Page, 2L);
        Assert.Equal(1, SpaceHelpers.Delta(before, space, VmCounters.WriteProtectFault));
        space.ReadPageMap(Base + Page, entries);
        Assert.NotEqual(0UL, entries[0] & (1UL << 55));
    }
}
