using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Bulk copies report how far they got (<c>process_vm_readv</c>/<c>process_vm_writev</c> semantics): the bytes copied
/// before the first failing page, the failing address and why, and vectored copies stop at the first failure.
/// </summary>
public sealed class BulkCopyTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x4000_0000_0000;

    // [0, 4) pages read-write, [4, 5) hole, [5, 6) read-only.
    private static AddressSpace NewSpace()
    {
        var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        MapFixed(space, Base, 4 * Page);
        MapFixed(space, Base + 5 * Page, Page, Protection.Read);
        return space;
    }

    [Fact]
    public void AReadAcrossAHoleReportsTheBytesBeforeItAndTheHolesAddress()
    {
        using AddressSpace space = NewSpace();
        using Cpu cpu = space.AttachCpu();
        cpu.Store(Base + 4 * Page - 8, 0x1122334455667788L);
        var buffer = new byte[2 * Page];

        GuestTransfer transfer = cpu.ReadPartial(Base + 3 * Page, buffer);

        Assert.Equal(new GuestTransfer((int)Page, AccessOutcome.SegvMapErr, Base + 4 * Page), transfer);
        Assert.Equal(0x1122334455667788L, BitConverter.ToInt64(buffer, (int)Page - 8));
    }

    [Fact]
    public void AWriteIntoAReadOnlyPageKeepsWhatWasWrittenBeforeIt()
    {
        using AddressSpace space = NewSpace();
        using Cpu cpu = space.AttachCpu();
        space.Protect(Base + 2 * Page, Page, Protection.Read);
        byte[] source = [.. Enumerable.Range(0, 3 * (int)Page).Select(i => (byte)(i % 251 + 1))];

        GuestTransfer transfer = cpu.WritePartial(Base + 100, source);

        Assert.Equal(new GuestTransfer(2 * (int)Page - 100, AccessOutcome.SegvAccErr, Base + 2 * Page), transfer);
        var back = new byte[2 * Page - 100];
        cpu.Read(Base + 100, back);
        Assert.Equal(source.AsSpan(0, back.Length).ToArray(), back);
        Assert.Equal(0, cpu.Load<byte>(Base + 2 * Page));
    }

    [Fact]
    public void AVectoredReadStopsAtTheFirstFailingSegmentAndTriesNoLaterOne()
    {
        using AddressSpace space = NewSpace();
        using Cpu cpu = space.AttachCpu();
        cpu.Store(Base + 10, 0xAAL);
        cpu.Store(Base + 2 * Page, 0xBBL);
        GuestSegment[] segments =
        [
            new(Base + 10, 8),
            new(Base + 3 * Page, 0),
            new(Base + 2 * Page, 8),
            new(Base + 3 * Page + Page - 4, 16), // 4 bytes, then the hole
            new(Base + 5 * Page, 8),             // readable, but never reached
        ];
        var buffer = new byte[64];

        GuestTransfer transfer = cpu.ReadVectored(segments, buffer);

        Assert.Equal(new GuestTransfer(20, AccessOutcome.SegvMapErr, Base + 4 * Page), transfer);
        Assert.Equal(0xAAL, BitConverter.ToInt64(buffer, 0));
        Assert.Equal(0xBBL, BitConverter.ToInt64(buffer, 8));
        Assert.False(space.IsResident(Base + 5 * Page), "the segment after the failure was not touched");
    }

    [Fact]
    public void AVectoredCopyEndsWhenTheHostBufferDoes()
    {
        using AddressSpace space = NewSpace();
        using Cpu cpu = space.AttachCpu();
        GuestSegment[] segments = [new(Base, 8), new(Base + Page, 8), new(Base + 4 * Page, 8)];
        byte[] source = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

        GuestTransfer transfer = cpu.WriteVectored(segments, source);

        Assert.Equal(new GuestTransfer(12, AccessOutcome.Ok, 0), transfer);
        Assert.True(transfer.IsComplete);
        Assert.Equal(0x0C0B0A09, cpu.Load<int>(Base + Page));
        Assert.Equal(0, cpu.Load<int>(Base + Page + 4));
    }

    [Fact]
    public void ABadSegmentIsRefusedBeforeAnythingIsCopied()
    {
        using AddressSpace space = NewSpace();
        using Cpu cpu = space.AttachCpu();
        GuestSegment[] wraps = [new(Base, 8), new(ulong.MaxValue - 3, 8)];
        GuestSegment[] negative = [new(Base, 8), new(Base + Page, -1)];

        Assert.Throws<ArgumentOutOfRangeException>(() => cpu.WriteVectored(wraps, new byte[16]));
        Assert.Throws<ArgumentOutOfRangeException>(() => cpu.ReadVectored(negative, new byte[16]));
        Assert.False(space.IsResident(Base), "nothing was copied");
    }
}
