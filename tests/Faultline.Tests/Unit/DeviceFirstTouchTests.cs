using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// The first access to a device (MMIO) page takes one fault, on each path: the Cpu's miss path sees the device VMA in
/// the published tree and goes straight to the device access, whose fault carries the access's bytes. Before, it
/// first raised a fault without them, which found the device, could not perform the access and answered SIGBUS, and
/// only the second fault reached the device. A device VMA replaced by memory at the same address is memory again.
/// </summary>
public sealed class DeviceFirstTouchTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x7000_0000;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    [Theory]
    [MemberData(nameof(Paths))]
    public void EachFirstAccessToADevicePageTakesOneFault(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });
        var device = new RecordingDevice();
        space.MapDevice(Base, 8 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, device, "/dev/first-touch");
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();

        for (ulong page = 0; page < 8; page++)
        {
            var before = Counters(space);
            if (page % 2 == 0)
            {
                cpu.Store(Base + page * Page, (uint)page);
            }
            else
            {
                Assert.Equal(0u, cpu.Load<uint>(Base + page * Page));
            }
            Assert.Equal(1, Delta(before, space, VmCounters.PageFault));
            Assert.Equal(1, Delta(before, space, HandledOnPathCounter(path)));
        }
        Assert.Equal(8, device.CallCount);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void MemoryMappedWhereADeviceWasIsMemory(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });
        var device = new RecordingDevice();
        space.MapDevice(Base, Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, device, "/dev/first-touch");
        using Cpu cpu = space.AttachCpu();
        cpu.Store(Base, 5u);
        space.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        cpu.Store(Base, 6u);
        Assert.Equal(6u, cpu.Load<uint>(Base));
        Assert.Equal(1, device.CallCount);
        Assert.True(space.IsResident(Base));
    }
}
