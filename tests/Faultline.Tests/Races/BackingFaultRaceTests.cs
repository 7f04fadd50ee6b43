using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// Deterministic races of <c>do_fault</c> on a backed VMA: a fault holding the backing's reference is stopped before
/// the PTE lock, another Cpu installs the page, and the first must find the PTE taken and give its reference back.
/// </summary>
public sealed class BackingFaultRaceTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;
    private const byte Written = 0x55;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void FaultThatLosesTheInstallRaceGivesTheBackingsReferenceBack(bool shared)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = FaultPath.Speculative, PhysicalMemoryBytes = 16 << 20 });
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 4);
        ulong a = space.MapBacking(Base, 4 * Page, Protection.ReadWrite, (shared ? MapFlags.Shared : MapFlags.Private) | MapFlags.Fixed,
            backing, 0);
        using Cpu loserCpu = space.AttachCpu();
        using Cpu winnerCpu = space.AttachCpu();
        // Builds the page tables, so both faults below reach the PTE speculatively.
        Assert.Equal(InMemoryBacking.PatternByte(1), winnerCpu.Load<byte>(a + Page));
        Dictionary<string, long> before = Counters(space);

        ThreadRunner<byte> loser;
        using (var gate = new ProbeGate(space, ProbePoint.SpeculativeBeforePteLock, ThreadRole.Is("loser")))
        {
            // Shared: both write (do_shared_fault); private: both read (do_read_fault).
            loser = ThreadRole.Run("loser", () =>
            {
                if (shared)
                {
                    loserCpu.Store(a, Written);
                }
                return loserCpu.Load<byte>(a);
            });
            gate.WaitArrived();
            if (shared)
            {
                winnerCpu.Store(a, Written);
            }
            Assert.Equal(shared ? Written : InMemoryBacking.PatternByte(0), winnerCpu.Load<byte>(a));
            gate.Release();
        }

        Assert.Equal(shared ? Written : InMemoryBacking.PatternByte(0), loser.Join());
        long pfn = backing.FrameOf(0);
        // The backing's reference and the one mapping's: the loser's reference went back.
        Assert.Equal(2, space.Descriptor.Memory.Info(pfn).RefCount);
        Assert.Equal(1, space.Descriptor.Memory.Info(pfn).MapCount);
        Assert.Equal(1, Delta(before, space, "fault_race_lost"));
        Assert.Equal(2, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(3, backing.Faults);
    }
}
