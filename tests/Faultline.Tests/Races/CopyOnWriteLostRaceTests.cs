using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// Two Cpus write the same page fork shared: both copy it (<c>wp_page_copy</c>), the second to take the PTE lock finds
/// the entry changed and abandons its copy. The abandoned frame was never mapped; it goes back to the Cpu's frame
/// cache and must go back poisoned, like any freed frame, or the next fault that takes it reads the copy as a store
/// through a stale translation.
/// </summary>
public sealed class CopyOnWriteLostRaceTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void CopyAbandonedByTheLoserIsPoisonedBeforeItsNextUse(FaultPath path)
    {
        using var parent = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = 32 << 20,
            PoisonFreedFrames = true,
            TransparentHugePages = TransparentHugePageMode.Never,
        });
        ulong a = MapFixed(parent, Base, 4 * Page);
        using Cpu loser = parent.AttachCpu();
        using Cpu winner = parent.AttachCpu();
        winner.Store(a, 1L);
        using AddressSpace child = parent.Fork();
        Dictionary<string, long> before = Counters(parent);
        ThreadRunner<bool> losing;
        using (var gate = new ProbeGate(parent, ProbePoint.CowCopiedBeforePteLock, ThreadRole.Is("loser")))
        {
            losing = ThreadRole.Run("loser", () =>
            {
                loser.Store(a, 2L);
                return true;
            });
            // The loser holds a filled copy of the shared page and has not taken the PTE lock.
            gate.WaitArrived();
            winner.Store(a + 8, 3L);
            gate.Release();
        }
        losing.Join();
        Assert.True(Delta(before, parent, VmCounters.FaultRaceLost) >= 1);

        // The loser's next fault takes the abandoned frame from its cache (last in, first out) and checks its poison.
        loser.Store(a + Page, 4L);
        Assert.Equal(0, parent.PoisonViolations);
        Assert.Equal(2L, winner.Load<long>(a));
        Assert.Equal(3L, loser.Load<long>(a + 8));
        Assert.Equal(4L, winner.Load<long>(a + Page));
        using Cpu childCpu = child.AttachCpu();
        Assert.Equal(1L, childCpu.Load<long>(a));
        Assert.Equal(0L, childCpu.Load<long>(a + 8));
    }
}
