using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// A read scope's TLB hits do not check the TLB generation, so writers meet the scope only at its quiescent points:
/// a writer on another thread waits for the next one (the scope keeps hitting the old frame meanwhile, which stays
/// referenced), and a writer on the scope's own thread flushes the scope's TLB itself instead of waiting.
/// </summary>
public sealed class ScopeQuiescentPointRaceTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x7400_0000;
    private const string Writer = "writer";

    private static AddressSpace NewSpace() =>
        new(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20, MapZeroPageOnRead = true, PoisonFreedFrames = true });

    private static long FrameOf(MemoryDescriptor mm, ulong address) => Pte.Frame(mm.PageTable.Lookup(address, mm.Probes));

    [Fact]
    public void MunmapOnAnotherThreadWaitsForTheScopesQuiescentPointWhileItsHitsKeepTheFrame()
    {
        using var space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapFixed(space, Base, 2 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        cpu.Store(a + Page, 0x2222L);
        long pfn = FrameOf(mm, a + Page);

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.GatherBeforeGracePeriod, ThreadRole.Is(Writer));
        CpuScope scope = cpu.EnterScope();
        Assert.Equal(0x2222L, scope.Load<long>(a + Page)); // in the scope's TLB now
        long waits = mm.Rcu.ReaderWaits;

        ThreadRunner<Errno> unmap = threads.Run(Writer, () => space.TryUnmap(a + Page, Page));
        gate.WaitArrived(); // the PTE is cleared; the grace period comes next
        Assert.False(HasPte(space, a + Page));
        gate.Release();
        ThreadRole.WaitUntil(() => mm.Rcu.ReaderWaits > waits, "the unmap's grace period to wait for the scope");

        // Hits are not quiescent points: the scope still reaches the frame, which keeps its reference meanwhile.
        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(0x2222L, scope.Load<long>(a + Page));
        }
        scope.Store(a + Page + 8, 7L);
        Assert.False(unmap.IsDone);
        Assert.Equal(1, mm.Memory.Info(pfn).RefCount);

        scope.QuiescentPoint();
        Assert.Equal(Errno.None, unmap.Join());
        Assert.Equal(0, mm.Memory.Info(pfn).RefCount);
        // The quiescent point caught the TLB up: the page is gone for the scope at once.
        Assert.Equal(AccessOutcome.SegvMapErr, scope.TryLoad(a + Page, out long _));
        Assert.True(cpu.IsInReadSection);
        scope.Dispose();
    }

    [Fact]
    public void MunmapOnTheScopesOwnThreadFlushesItsTlbSoTheFreedFrameIsNeverReached()
    {
        using var space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapFixed(space, Base, Page);
        ulong b = MapFixed(space, Base + 16 * Page, Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        cpu.Store(a, 0x1111L);
        long pfn = FrameOf(mm, a);
        bool hitBeforeFlush = false;
        long generationBefore = 0;

        using (CpuScope scope = cpu.EnterScope())
        {
            Assert.Equal(0x1111L, scope.Load<long>(a));
            generationBefore = mm.Tlb.Current;
            // At the grace period the PTE is gone but the scope's TLB still holds the page: only the writer's own flush
            // of this thread's scope (it cannot wait for it) takes the translation away.
            CpuScope inProbe = scope;
            mm.Probes.Handler = point =>
            {
                if (point == ProbePoint.GatherBeforeGracePeriod)
                {
                    hitBeforeFlush = inProbe.TryLoad(a, out long seen) == AccessOutcome.Ok && seen == 0x1111L;
                }
            };
            Errno unmapped = space.TryUnmap(a, Page); // returns: no wait for its own thread's scope
            mm.Probes.Handler = null;
            Assert.Equal(Errno.None, unmapped);
            Assert.True(hitBeforeFlush);
            Assert.True(mm.Tlb.Current > generationBefore);
            Assert.Equal(0, mm.Memory.Info(pfn).RefCount);

            // The freed frame (poisoned) may go to another mapping; the scope never reaches it through its old translation.
            second.Store(b, 0x3333L);
            Assert.Equal(AccessOutcome.SegvMapErr, scope.TryLoad(a, out long after));
            Assert.Equal(0L, after);
            Assert.Equal(0x3333L, scope.Load<long>(b));
            Assert.True(cpu.IsInReadSection);
        }
    }

    [Fact]
    public void AFirstWriteOverTheZeroPageWaitsForAScopeOnAnotherThreadThatStillReadsIt()
    {
        using var space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapFixed(space, Base, Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();

        using var threads = new ThreadScope();
        CpuScope scope = cpu.EnterScope();
        Assert.Equal(0L, scope.Load<long>(a)); // the zero page, in the scope's TLB
        Assert.Equal(PhysicalMemory.ZeroFrame, FrameOf(mm, a));
        long waits = mm.Rcu.ReaderWaits;

        ThreadRunner<bool> write = threads.Run(Writer, () =>
        {
            second.Store(a, 5L);
            return true;
        });
        ThreadRole.WaitUntil(() => mm.Rcu.ReaderWaits > waits, "the copy-on-write of the zero page to wait for the scope");
        Assert.False(write.IsDone);
        Assert.Equal(0L, scope.Load<long>(a)); // the store has not returned: the old zero still reads

        scope.QuiescentPoint();
        Assert.True(write.Join());
        // Once the writer's store returned, the scope sees it (no stale zero page after a quiescent point).
        Assert.Equal(5L, scope.Load<long>(a));
        scope.Dispose();
    }

    [Fact]
    public void DisposingTheAddressSpaceOnAnotherThreadWaitsForTheScopeAndItsNextAccessIsRefused()
    {
        var space = NewSpace();
        MemoryDescriptor mm = space.Descriptor;
        ulong a = MapFixed(space, Base, Page);
        Cpu cpu = space.AttachCpu();
        cpu.Store(a, 9L);

        using var threads = new ThreadScope();
        CpuScope scope = cpu.EnterScope();
        Assert.Equal(9L, scope.Load<long>(a));
        long waits = mm.Rcu.ReaderWaits;

        ThreadRunner<bool> dispose = threads.Run(Writer, () =>
        {
            space.Dispose();
            return true;
        });
        ThreadRole.WaitUntil(() => mm.Rcu.ReaderWaits > waits, "the teardown's grace period to wait for the scope");
        Assert.Equal(9L, scope.Load<long>(a)); // the arena is still there: the teardown waits
        Assert.False(dispose.IsDone);

        scope.QuiescentPoint();
        Assert.True(dispose.Join());
        Assert.False(cpu.IsInReadSection);
        Assert.Throws<ObjectDisposedException>(() => scope.Load<long>(a));
        scope.Dispose();
        cpu.Dispose();
    }
}
