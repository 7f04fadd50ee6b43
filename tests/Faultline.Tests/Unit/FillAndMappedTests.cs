using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary><see cref="Cpu.Fill"/>, <see cref="Cpu.FillPartial"/> and <see cref="Cpu.IsMapped"/>.</summary>
public sealed class FillAndMappedTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x6000_0000;

    private static AddressSpace NewSpace() => new(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });

    [Fact]
    public void FillSetsEveryByteAcrossPagesAndNothingElse()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, 3 * Page);
        using Cpu cpu = space.AttachCpu();
        cpu.Fill(a + 10, (int)(2 * Page), 0x5A);
        var bytes = new byte[3 * Page];
        cpu.Read(a, bytes);
        for (int i = 0; i < bytes.Length; i++)
        {
            Assert.Equal(i >= 10 && i < 10 + (int)(2 * Page) ? 0x5A : 0, bytes[i]);
        }
        cpu.Fill(a, 0, 1); // nothing to do
        Assert.Throws<ArgumentOutOfRangeException>(() => cpu.Fill(a, -1, 1));
    }

    [Fact]
    public void FillPartialReportsTheBytesDoneAndTheFailingAddress()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, 3 * Page);
        space.Protect(a + 2 * Page, Page, Protection.Read);
        using Cpu cpu = space.AttachCpu();
        GuestTransfer transfer = cpu.FillPartial(a + Page + 100, (int)(2 * Page), 7);
        Assert.Equal(new GuestTransfer((int)Page - 100, AccessOutcome.SegvAccErr, a + 2 * Page), transfer);
        Assert.Equal(7, cpu.Load<byte>(a + 2 * Page - 1));
        Assert.Equal(0, cpu.Load<byte>(a + 2 * Page));
        var thrown = Assert.Throws<SegmentationFaultException>(() => cpu.Fill(a + 2 * Page - 1, 2, 9));
        Assert.Equal(a + 2 * Page, thrown.Address);
        Assert.Equal(AccessKind.Write, thrown.Access);
        Assert.Equal(new GuestTransfer(0, AccessOutcome.SegvMapErr, a + 3 * Page), cpu.FillPartial(a + 3 * Page, 1, 1));
    }

    [Fact]
    public void IsMappedAsksEveryPageForTheAccessWithoutFaultingOrAllocating()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, 2 * Page);
        MapFixed(space, Base + 2 * Page, Page, Protection.Read);
        MapFixed(space, Base + 4 * Page, Page, Protection.None);
        using Cpu cpu = space.AttachCpu();
        var before = Counters(space);
        int frames = space.FramesInUse;

        Assert.True(cpu.IsMapped(a, 3 * Page, AccessKind.Read));
        Assert.True(cpu.IsMapped(a + 1, 2 * Page - 1, AccessKind.Write)); // ends with the second page
        Assert.False(cpu.IsMapped(a + 1, 2 * Page, AccessKind.Write)); // its last byte is in the read-only page
        Assert.False(cpu.IsMapped(a, 4 * Page, AccessKind.Read)); // the hole at page 3
        Assert.False(cpu.IsMapped(a + 4 * Page, 1, AccessKind.Read)); // PROT_NONE
        Assert.False(cpu.IsMapped(a, Page, AccessKind.Execute));
        Assert.True(cpu.IsMapped(a + 3 * Page, 0, AccessKind.Write)); // empty
        Assert.False(cpu.IsMapped(ulong.MaxValue - 10, 20, AccessKind.Read)); // wraps

        Assert.Equal(0, Delta(before, space, VmCounters.PageFault));
        Assert.Equal(frames, space.FramesInUse);
        Assert.Equal(0, space.ResidentPages);
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            cpu.IsMapped(a, 3 * Page, AccessKind.Read);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - allocated);
        space.Dispose();
        Assert.Throws<ObjectDisposedException>(() => cpu.IsMapped(a, 1, AccessKind.Read));
    }
}
