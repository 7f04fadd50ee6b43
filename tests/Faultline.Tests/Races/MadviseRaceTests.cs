using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// MADV_DONTNEED and MADV_FREE hold the mmap lock only for read and leave the VMAs alone, as Linux's
/// <c>madvise_lock</c> does, so a fault on any path may run beside them. Staged with probe gates: a fault stopped
/// with its frame allocated, before the PTE lock, while the advice runs to completion; the fault then installs its
/// page, and the answer is the one Linux gives (the page faulted in after the zap is kept).
/// </summary>
public sealed class MadviseRaceTests
{
    private const ulong Page = 4096;
    private const string Faulter = "faulter";
    private const string Adviser = "adviser";

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    [Theory]
    [MemberData(nameof(Paths))]
    public void DontNeedCompletesBesideAFaultInFlightWhichThenInstallsItsPage(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });
        ulong a = space.Map(0x1000_0000, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        other.Store(a, 1L);
        other.Store(a + 2 * Page, 3L);

        using var threads = new ThreadScope();
        using var beforePteLock = new ProbeGate(space, ProbePoint.AnonymousBeforePteLock, ThreadRole.Is(Faulter));
        var fault = threads.Run(Faulter, () => cpu.TryStore(a + Page, 2L));
        beforePteLock.WaitArrived();

        // The classic fault holds the mmap read lock and the VMA-lock fault the VMA's read lock: DONTNEED needs neither
        // for write, so it finishes while the fault is stopped.
        var advice = threads.Run(Adviser, () => space.TryAdvise(a, 8 * Page, Advice.DontNeed));
        Assert.Equal(Errno.None, advice.Join());
        Assert.False(space.IsResident(a));
        Assert.False(space.IsResident(a + 2 * Page));
        Assert.Equal(0, space.ResidentPages);

        beforePteLock.Release();
        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(2L, cpu.Load<long>(a + Page));
        Assert.Equal(0L, cpu.Load<long>(a));
        Assert.Equal(1, space.ResidentPages);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void FreeBesideAFaultInFlightLeavesTheNewPageDirtyAndTheOthersLazilyFreeable(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });
        ulong a = space.Map(0x1000_0000, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        other.Store(a, 1L);

        using var threads = new ThreadScope();
        using var beforePteLock = new ProbeGate(space, ProbePoint.AnonymousBeforePteLock, ThreadRole.Is(Faulter));
        var fault = threads.Run(Faulter, () => cpu.TryStore(a + Page, 2L));
        beforePteLock.WaitArrived();
        var advice = threads.Run(Adviser, () => space.TryAdvise(a, 4 * Page, Advice.Free));
        Assert.Equal(Errno.None, advice.Join());
        beforePteLock.Release();
        Assert.Equal(AccessOutcome.Ok, fault.Join());

        string smaps = space.GetSmaps();
        Assert.Contains("LazyFree:              4 kB", smaps);
        Assert.Contains("Private_Dirty:         4 kB", smaps);
        Assert.Equal(1L, cpu.Load<long>(a));
        Assert.Equal(2L, cpu.Load<long>(a + Page));
    }
}
