using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// A store racing a dirty-log get-and-clear is reported by that call or by the next one, never lost. Staged with a
/// Cpu stopped inside its read section between its TLB-miss walk (which found the page writable) and its store,
/// while the get-and-clear runs: a page already dirty is reported now, and the call's TLB flush waits for the
/// stopped store, so the value has landed when the call returns; a page mapped writable and clean is armed under the
/// Cpu, whose dirty-bit CAS then fails, so it walks again, faults on the armed entry, and the next call reports it.
/// </summary>
public sealed class DirtyLogRaceTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;
    private const string Writer = "writer";
    private const string Logger = "logger";

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static long GetAndClear(AddressSpace space, ulong[] bitmap) => space.GetAndClearDirtyLog(Base, 8 * Page, bitmap);

    [Theory]
    [MemberData(nameof(Paths))]
    public void AStoreThroughAWritableTranslationTakenBeforeTheCallIsReportedByItAndHasLandedWhenItReturns(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });
        space.Map(Base, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu owner = space.AttachCpu();
        using Cpu writer = space.AttachCpu();
        owner.Store(Base + Page, 1L);
        var bitmap = new ulong[1];
        Assert.Equal(1, GetAndClear(space, bitmap));
        owner.Store(Base + Page, 2L);

        using var threads = new ThreadScope();
        using var walked = new ProbeGate(space, ProbePoint.TlbMissWalked, ThreadRole.Is(Writer));
        using var flushing = new ProbeGate(space, ProbePoint.GatherBeforeGracePeriod, ThreadRole.Is(Logger));
        // The writer's TLB is empty: its store walks, finds the entry writable and dirty, and stops before storing.
        var store = threads.Run(Writer, () => writer.TryStore(Base + Page, 3L));
        walked.WaitArrived();
        var log = threads.Run(Logger, () => GetAndClear(space, bitmap));
        flushing.WaitArrived();
        flushing.Release();
        // The call armed the entry and now waits for the grace period, which the stopped store holds back.
        Thread.Sleep(20);
        Assert.False(log.IsDone);

        walked.Release();
        Assert.Equal(AccessOutcome.Ok, store.Join());
        Assert.Equal(1, log.Join());
        Assert.Equal(1UL << 1, bitmap[0]);
        Assert.Equal(3L, owner.Load<long>(Base + Page));
        // The store went through the translation taken before the arming: it was this call's, not the next one's.
        Assert.Equal(0, GetAndClear(space, bitmap));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AStoreWhoseDirtyBitLosesToTheArmingFaultsAndIsReportedByTheNextCall(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });
        space.Map(Base, 8 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);
        using Cpu owner = space.AttachCpu();
        using Cpu writer = space.AttachCpu();
        // A read maps the shared page writable and clean: the first store must set the dirty bit with a CAS.
        Assert.Equal(0L, owner.Load<long>(Base + 2 * Page));
        var bitmap = new ulong[1];

        using var threads = new ThreadScope();
        using var walked = new ProbeGate(space, ProbePoint.TlbMissWalked, ThreadRole.Is(Writer));
        var store = threads.Run(Writer, () => writer.TryStore(Base + 2 * Page, 5L));
        walked.WaitArrived();
        var log = threads.Run(Logger, () => GetAndClear(space, bitmap));
        // The call reports the clean page as not written and arms it; its grace period waits for the stopped Cpu.
        Thread.Sleep(20);
        Assert.False(log.IsDone);

        var before = SpaceHelpers.Counters(space);
        walked.Release();
        Assert.Equal(AccessOutcome.Ok, store.Join());
        Assert.Equal(0, log.Join());
        Assert.Equal(1, SpaceHelpers.Delta(before, space, VmCounters.WriteProtectFault));
        Assert.Equal(5L, owner.Load<long>(Base + 2 * Page));
        Assert.Equal(1, GetAndClear(space, bitmap));
        Assert.Equal(1UL << 2, bitmap[0]);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AStoreFaultingWhileTheCallFlushesIsReportedByTheNextCall(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });
        space.Map(Base, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu owner = space.AttachCpu();
        using Cpu writer = space.AttachCpu();
        owner.Store(Base + 3 * Page, 1L);
        var bitmap = new ulong[1];

        using var threads = new ThreadScope();
        using var flushing = new ProbeGate(space, ProbePoint.GatherBeforeGracePeriod, ThreadRole.Is(Logger));
        var log = threads.Run(Logger, () => GetAndClear(space, bitmap));
        flushing.WaitArrived();
        // The entry is armed and the call has not flushed: a store that misses its TLB faults on the armed entry.
        Assert.Equal(AccessOutcome.Ok, threads.Run(Writer, () => writer.TryStore(Base + 3 * Page, 2L)).Join());
        flushing.Release();

        Assert.Equal(1, log.Join());
        Assert.Equal(1, GetAndClear(space, bitmap));
        Assert.Equal(1UL << 3, bitmap[0]);
        Assert.Equal(2L, owner.Load<long>(Base + 3 * Page));
    }
}
