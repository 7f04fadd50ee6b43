using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// munmap racing a live zero-copy span of a <see cref="CpuScope"/>: the unmap takes the page away at once but its
/// grace period waits for the scope, so the frame under the span keeps its reference, and cannot be handed out again,
/// until the scope ends.
/// </summary>
public sealed class ScopedSpanRaceTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x7200_0000;
    private const string Writer = "writer";

    [Fact]
    public void TheFrameUnderALiveSpanIsNotFreedBeforeTheScopeEnds()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        MemoryDescriptor mm = space.Descriptor;
        ulong a = space.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        ulong other = space.Map(Base + 16 * Page, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        cpu.Store(a, 0x1111L);
        cpu.Store(a + Page, 0x2222L);

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.GatherBeforeGracePeriod, ThreadRole.Is(Writer));
        CpuScope scope = cpu.EnterScope();
        Span<byte> span = scope.GetSpan(a, 8);
        long pfn = Pte.Frame(mm.PageTable.Lookup(a, mm.Probes));
        Assert.Equal(1, mm.Memory.Info(pfn).RefCount);
        long waits = mm.Rcu.ReaderWaits;

        ThreadRunner<Errno> unmap = threads.Run(Writer, () => space.TryUnmap(a, 2 * Page));
        gate.WaitArrived(); // the PTEs are gone; the flush and the frees come next
        gate.Release();
        ThreadRole.WaitUntil(() => mm.Rcu.ReaderWaits > waits, "the unmap's grace period waits for the scope");

        Assert.False(unmap.IsDone);
        Assert.False(HasPte(space, a)); // unmapped at once
        Assert.Equal(1, mm.Memory.Info(pfn).RefCount); // but the reference goes only after the grace period
        Assert.Equal(0x11, span[0]);
        span[1] = 0x77; // still the frame it was: nobody else holds it
        // Another Cpu faulting in a new page gets a different frame, which the span does not reach.
        second.Store(other, 5L);
        Assert.Equal(5L, second.Load<long>(other));
        Assert.NotEqual(pfn, Pte.Frame(mm.PageTable.Lookup(other, mm.Probes)));
        Assert.Equal(0x7711, BitConverter.ToInt16(span[..2]));

        scope.Dispose();
        Assert.Equal(Errno.None, unmap.Join());
        Assert.Equal(0, mm.Memory.Info(pfn).RefCount); // freed now
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(a, out long _));
    }
}
