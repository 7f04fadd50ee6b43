using Faultline.Concurrency;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Frames shared between address spaces over one guest RAM: references outlive every translation (the gather drops
/// them after the flush), the exclusivity rule (<c>PageAnonExclusive</c>, <c>wp_can_reuse_anon_folio</c>), and
/// <c>wp_page_copy</c> of a shared frame.
/// </summary>
public class FrameOwnershipTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Address = 0x5000_0000;

    private static readonly FaultlineOptions Options = new() { PhysicalMemoryBytes = 16 << 20 };

    private static long FrameAt(AddressSpace space, ulong address) =>
        Pte.Frame(space.Descriptor.PageTable.Lookup(address, space.Descriptor.Probes));

    [Fact]
    public void SharedFrameIsFreedOnlyAfterTheGracePeriodOfEverySpaceThatMappedIt()
    {
        using var first = new AddressSpace(Options);
        using var second = new AddressSpace(Options, first.Descriptor.Memory);
        PhysicalMemory memory = first.Descriptor.Memory;
        MapFixed(first, Address, Page);
        MapFixed(second, Address, Page);
        using Cpu cpu = first.AttachCpu();
        cpu.Store(Address, 0x1234_5678L);
        long pfn = SharedPages.Share(first, second, Address);
        Assert.Equal(2, memory.Info(pfn).RefCount);
        Assert.Equal(2, memory.Info(pfn).MapCount);

        // A Cpu of the first space inside its read section: it may still be using a translation to the frame.
        var reader = new RcuReader(first.Descriptor.Tlb);
        var claim = new UseClaim();
        Assert.True(first.Descriptor.TryAttachContext(reader, claim));
        reader.Enter();
        ThreadRunner<bool> unmap;
        using (var beforeGracePeriod = new ProbeGate(first, ProbePoint.GatherBeforeGracePeriod, ThreadRole.Is("munmap")))
        {
            unmap = ThreadRole.Run("munmap", () =>
            {
                first.Unmap(Address, Page);
                return true;
            });
            beforeGracePeriod.WaitArrived();
            // Zapped: the map count is gone, the reference is the gather's until the flush.
            Assert.Equal(1, memory.Info(pfn).MapCount);
            Assert.Equal(2, memory.Info(pfn).RefCount);
            beforeGracePeriod.Release();
        }

        // The second space's grace period has no reader to wait for: its put drops 2 → 1, and the frame lives on.
        second.Unmap(Address, Page);
        Assert.Equal(1, memory.Info(pfn).RefCount);
        Assert.Equal(0, memory.Info(pfn).MapCount);
        Assert.Equal(FrameKind.Anonymous, memory.Info(pfn).Kind);
        unsafe
        {
            Assert.Equal(0x1234_5678L, *(long*)memory.FrameAddress(pfn));
        }

        reader.Exit();
        Assert.True(unmap.Join());
        Assert.Equal(FrameKind.Free, memory.Info(pfn).Kind);
        Assert.Equal(0, memory.Info(pfn).RefCount);
        first.Descriptor.DetachContext(reader, claim);
    }

    [Fact]
    public void WriteToASharedFrameCopiesItAndTheOtherSpaceThenReusesItsOwn()
    {
        using var first = new AddressSpace(Options);
        using var second = new AddressSpace(Options, first.Descriptor.Memory);
        PhysicalMemory memory = first.Descriptor.Memory;
        MapFixed(first, Address, Page);
        MapFixed(second, Address, Page);
        using Cpu cpu = first.AttachCpu();
        using Cpu otherCpu = second.AttachCpu();
        cpu.Store(Address, 0x11L);
        long pfn = FrameAt(first, Address);
        Assert.True(memory.HasFlags(pfn, FrameFlags.AnonExclusive));
        SharedPages.Share(first, second, Address);
        Assert.False(memory.IsExclusiveAnonymous(pfn));

        // mprotect must not make a shared frame writable again (the one exclusivity rule).
        first.Protect(Address, Page, Protection.Read);
        first.Protect(Address, Page, Protection.ReadWrite);
        Assert.Equal(0UL, first.Descriptor.PageTable.Lookup(Address, first.Descriptor.Probes) & Pte.Writable);

        Assert.Equal(0x11L, otherCpu.Load<long>(Address));
        var before = Counters(second);
        otherCpu.Store(Address, 0x22L);

        long copy = FrameAt(second, Address);
        Assert.NotEqual(pfn, copy);
        Assert.Equal(0x22L, otherCpu.Load<long>(Address));
        Assert.Equal(0x11L, cpu.Load<long>(Address));
        Assert.True(memory.HasFlags(copy, FrameFlags.AnonExclusive));
        Assert.Equal(1, memory.Info(pfn).RefCount);
        Assert.Equal(1, memory.Info(pfn).MapCount);
        Assert.Equal(1, Delta(before, second, "wp_fault"));
        Assert.True(Delta(before, second, "grace_period") >= 1);

        // The first space's frame is mapped once and referenced once again: reused in place, marked exclusive.
        cpu.Store(Address, 0x33L);
        Assert.Equal(pfn, FrameAt(first, Address));
        Assert.True(memory.HasFlags(pfn, FrameFlags.AnonExclusive));
        Assert.Equal(0x33L, cpu.Load<long>(Address));
        Assert.Equal(0x22L, otherCpu.Load<long>(Address));
    }

    [Fact]
    public void DisposingOneSpaceGivesBackItsFramesAndKeepsTheSharedOnes()
    {
        using var first = new AddressSpace(Options);
        PhysicalMemory memory = first.Descriptor.Memory;
        MapFixed(first, Address, 2 * Page);
        using Cpu cpu = first.AttachCpu();
        cpu.Store(Address, 0x77L);
        int framesBefore = memory.FramesInUse;
        long pfn;
        using (var second = new AddressSpace(Options, memory))
        {
            MapFixed(second, Address, 2 * Page);
            pfn = SharedPages.Share(first, second, Address);
            using Cpu otherCpu = second.AttachCpu();
            otherCpu.Store(Address + Page, 0x88L);
            Assert.Equal(2, memory.Users);
        }

        Assert.Equal(1, memory.Users);
        Assert.Equal(1, memory.Info(pfn).RefCount);
        Assert.Equal(1, memory.Info(pfn).MapCount);
        Assert.Equal(framesBefore, memory.FramesInUse);
        Assert.Equal(0x77L, cpu.Load<long>(Address));
    }
}
