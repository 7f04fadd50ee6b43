using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Read scopes: accesses through a scope behave as plain ones; the scope holds the Cpu's read section from start to
/// end (through faults, failed accesses and plain accesses inside it), so writers on other threads wait for it until it
/// misses its TLB, passes a quiescent point or ends; a writer on its own thread does not; an ended scope is refused.
/// </summary>
public sealed class CpuScopeTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;

    private static AddressSpace NewSpace(FaultPath path = FaultPath.Speculative) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void ScopedAccessesFaultInReadWriteAndReportFailuresLikePlainOnes(FaultPath path)
    {
        using var space = NewSpace(path);
        ulong a = MapFixed(space, Base, 4 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        using (CpuScope scope = cpu.EnterScope())
        {
            scope.Store(a + 8, 41L);
            scope.Store(a + Page - 4, 0x1122334455667788L);
            Assert.Equal(41L, scope.Load<long>(a + 8));
            Assert.Equal(0x1122334455667788L, scope.Load<long>(a + Page - 4));
            Assert.Equal(AccessOutcome.SegvMapErr, scope.TryLoad(a + 8 * Page, out long _));
            Assert.Throws<SegmentationFaultException>(() => scope.Store(a + 9 * Page, 1));
            // The failures left the scope inside its section, as did the plain access below.
            Assert.True(cpu.IsInReadSection);
            cpu.Store(a + 2 * Page, 3L);
            Assert.True(cpu.IsInReadSection);
            Assert.Equal(AccessOutcome.Ok, scope.TryStore(a + 3 * Page, 4L));
        }
        Assert.False(cpu.IsInReadSection);
        Assert.Equal(41L, other.Load<long>(a + 8));
        Assert.Equal(4L, other.Load<long>(a + 3 * Page));
    }

    [Fact]
    public void AWriterOnAnotherThreadWaitsForTheScopeUntilItsQuiescentPoint()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 2 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        other.Store(a + Page, 2L);
        using CpuScope scope = cpu.EnterScope();
        Assert.Equal(2L, scope.Load<long>(a + Page));

        ThreadRunner<bool> unmap = ThreadRole.Run("writer", () =>
        {
            space.Unmap(a + Page, Page);
            return true;
        });
        ThreadRole.WaitUntil(() => space.GetCounters()["grace_period_reader_wait"] > 0, "the unmap to wait for the scope");
        Assert.False(unmap.IsDone);
        scope.QuiescentPoint();
        unmap.Join();

        // The scope's TLB still held the page; the next access catches up and finds it gone.
        Assert.Equal(AccessOutcome.SegvMapErr, scope.TryLoad(a + Page, out long _));
        Assert.True(cpu.IsInReadSection);
    }

    [Fact]
    public void AMissThroughTheScopeIsAQuiescentPointToo()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 2 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        other.Store(a + Page, 2L);
        using CpuScope scope = cpu.EnterScope();
        scope.Store(a, 1L);

        ThreadRunner<bool> protect = ThreadRole.Run("writer", () =>
        {
            space.Protect(a, Page, Protection.Read);
            return true;
        });
        ThreadRole.WaitUntil(() => space.GetCounters()["grace_period_reader_wait"] > 0, "the mprotect to wait for the scope");
        // Not in this Cpu's TLB (another Cpu wrote it): the miss catches the TLB up, which lets the writer go on.
        Assert.Equal(2L, scope.Load<long>(a + Page));
        protect.Join();

        Assert.Equal(AccessOutcome.SegvAccErr, scope.TryStore(a, 5L));
        Assert.Equal(1L, scope.Load<long>(a));
    }

    [Fact]
    public void WritersOnTheScopesOwnThreadDoNotWaitForIt()
    {
        var space = NewSpace();
        ulong a = MapFixed(space, Base, 2 * Page);
        Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        CpuScope scope = cpu.EnterScope();
        scope.Store(a, 1L);
        scope.Store(a + Page, 2L);

        space.Unmap(a + Page, Page);
        using (AddressSpace child = space.Fork())
        {
            scope.Store(a, 3L);
        }
        Assert.Equal(AccessOutcome.SegvMapErr, scope.TryLoad(a + Page, out long _));
        space.Dispose();

        Assert.Throws<ObjectDisposedException>(() => scope.Load<long>(a));
        scope.Dispose();
        cpu.Dispose();
    }

    [Fact]
    public void AnEndedScopeIsRefusedAndOnlyOneScopeIsOpenAtATime()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, Page);
        using Cpu cpu = space.AttachCpu();
        CpuScope scope = cpu.EnterScope();
        scope.Store(a, 1L);
        Assert.Throws<InvalidOperationException>(() => cpu.EnterScope());
        CpuScope copy = scope;
        scope.Dispose();
        scope.Dispose();

        Assert.Throws<ObjectDisposedException>(() => copy.Load<long>(a));
        Assert.Throws<ObjectDisposedException>(() => copy.QuiescentPoint());
        using (CpuScope next = cpu.EnterScope())
        {
            Assert.Equal(1L, next.Load<long>(a));
            Assert.Throws<ObjectDisposedException>(() => copy.QuiescentPoint());
            // An ended scope never hits again, even while a newer one holds the section.
            Assert.Throws<ObjectDisposedException>(() => copy.Load<long>(a));
        }
        Assert.Equal(1L, cpu.Load<long>(a));
    }

    [Fact]
    public void DisposingTheCpuEndsItsScope()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, Page);
        Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        CpuScope scope = cpu.EnterScope();
        scope.Store(a, 1L);
        cpu.Dispose();

        Assert.False(cpu.IsInReadSection);
        Assert.Throws<ObjectDisposedException>(() => scope.Load<long>(a));
        // Nothing waits for the gone Cpu.
        space.Unmap(a, Page);
        scope.Dispose();
    }

    // A scope ties its Cpu to its thread: another thread's miss through it, quiescent point, end, plain miss and
    // Dispose of the Cpu are refused before they touch the section or the TLB, and the owner goes on undisturbed.
    [Fact]
    public void AScopeUsedFromAnotherThreadIsRefusedOnEverySlowPathAndStaysTheOwners()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 4 * Page);
        using Cpu cpu = space.AttachCpu();
        CpuScope scope = cpu.EnterScope();
        scope.Store(a, 1L);

        Exception?[] refused = ThreadRole.Run("intruder", () => new[]
        {
            Record.Exception(() => scope.Load<long>(a + Page)),
            Record.Exception(() => scope.TryStore(a + 2 * Page, 2L)),
            Record.Exception(scope.QuiescentPoint),
            Record.Exception(scope.Dispose),
            Record.Exception(() => cpu.Load<long>(a + 3 * Page)),
            Record.Exception(cpu.Dispose),
        }).Join();

        Assert.All(refused, e => Assert.Equal("a scope of this Cpu is open on another thread", Assert.IsType<InvalidOperationException>(e).Message));
        Assert.True(cpu.IsInReadSection);
        Assert.Equal(1, space.ResidentPages);
        Assert.Equal(1L, scope.Load<long>(a));
        scope.Store(a + Page, 3L);
        scope.QuiescentPoint();
        scope.Dispose();
        Assert.False(cpu.IsInReadSection);
        // Once the scope has ended, the Cpu may change threads again.
        Assert.True(ThreadRole.Run("next", () => cpu.Load<long>(a + Page) == 3L).Join());
    }
}
