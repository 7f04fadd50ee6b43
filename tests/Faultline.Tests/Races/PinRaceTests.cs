using Faultline.Concurrency;
using Faultline.Physical;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// A pin stopped between faulting a page in and looking it up again (no lock held there) while the page is unmapped or
/// replaced: the pin fails or pins what is mapped when it looks, and a failure leaves nothing pinned.
/// </summary>
public sealed class PinRaceTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;
    private const string Pinner = "pinner";

    private static long FrameAt(AddressSpace space, ulong address) =>
        Paging.Pte.Frame(space.Descriptor.PageTable.Lookup(address, space.Descriptor.Probes));

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void APinWhoseNextPageIsUnmappedAfterItsFaultPinsNothing(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });
        PhysicalMemory memory = space.Descriptor.Memory;
        ulong a = space.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1L);
        long first = FrameAt(space, a);

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.PinFaultedBeforeLookup, ThreadRole.Is(Pinner));
        ThreadRunner<Errno> pin = threads.Run(Pinner, () => space.TryPin(a, 2 * Page, write: true, out _));
        gate.WaitArrived();
        // The first page is pinned, the second faulted in; no lock is held, so the unmap runs to its end.
        Assert.True(memory.IsPinned(first));
        space.Unmap(a + Page, Page);

        gate.Release();
        Assert.Equal(Errno.EFAULT, pin.Join());
        Assert.False(memory.IsPinned(first));
        Assert.Equal(1, memory.Info(first).RefCount);
        Assert.Equal(1, memory.Users);
        Assert.Equal(1L, cpu.Load<long>(a));
    }

    [Fact]
    public void APinWhosePageIsReplacedAfterItsFaultPinsTheNewFrame()
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = FaultPath.VmaLock, PhysicalMemoryBytes = 16 << 20 });
        PhysicalMemory memory = space.Descriptor.Memory;
        ulong a = space.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.PinFaultedBeforeLookup, ThreadRole.Is(Pinner));
        PinnedPages? pinned = null;
        ThreadRunner<Errno> pin = threads.Run(Pinner, () => space.TryPin(a, Page, write: true, out pinned));
        gate.WaitArrived();
        space.Advise(a, Page, Advice.DontNeed);
        cpu.Store(a, 5L);
        long replaced = FrameAt(space, a);

        gate.Release();
        Assert.Equal(Errno.None, pin.Join());
        using (pinned)
        {
            // The lookup after the fault pins the frame mapped now (the one the fault installed was dropped).
            Assert.Equal(replaced, pinned!.FrameOf(0));
            Assert.Equal(5L, BitConverter.ToInt64(pinned.GetPage(0)));
            Assert.True(memory.IsPinned(replaced));
        }
        Assert.False(memory.IsPinned(replaced));
    }
}
