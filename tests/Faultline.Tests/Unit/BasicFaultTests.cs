using Faultline;
using Xunit;

namespace Faultline.Tests.Unit;

public class BasicFaultTests
{
    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    [Theory]
    [MemberData(nameof(Paths))]
    public void FirstTouchWriteAllocatesZeroedFrameAndReadsBack(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 64 << 20 });
        ulong a = space.Map(0, 1 << 20, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        Assert.Equal(0L, cpu.Load<long>(a + 4096));
        cpu.Store(a + 8, 0x1122334455667788L);
        Assert.Equal(0x1122334455667788L, cpu.Load<long>(a + 8));
        Assert.Equal(0x1122334455667788L, other.Load<long>(a + 8));
        for (ulong p = a; p < a + (1 << 20); p += 4096)
        {
            other.Store(p, (int)(p >> 12));
        }
        for (ulong p = a; p < a + (1 << 20); p += 4096)
        {
            Assert.Equal((int)(p >> 12), cpu.Load<int>(p));
        }
        Assert.Equal(256, space.ResidentPages);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AccessOutsideMappingIsMapErrAndWriteToReadOnlyIsAccErr(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 64 << 20 });
        ulong a = space.Map(0, 8192, Protection.Read, MapFlags.PrivateAnonymous);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        Assert.Equal(AccessOutcome.Ok, cpu.TryLoad(a, out long _));
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(a, 1L));
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(a + 8192, out long _));
        var ex = Assert.Throws<SegmentationFaultException>(() => cpu.Store(a + 16, 5));
        Assert.Equal(2, ex.SignalCode);
        Assert.Equal(a + 16, ex.Address);
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryFetch(a, out byte _));
    }

    [Fact]
    public void ProtectRevokesWriteAndSplitsThenMerges()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 64 << 20 });
        ulong a = space.Map(0, 16 * 4096, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a + 5 * 4096, 7);
        space.Protect(a + 4 * 4096, 4 * 4096, Protection.Read);
        Assert.Equal(3, space.MapCount);
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(a + 5 * 4096, 8));
        Assert.Equal(7, cpu.Load<int>(a + 5 * 4096));
        space.Protect(a + 4 * 4096, 4 * 4096, Protection.ReadWrite);
        Assert.Equal(1, space.MapCount);
        cpu.Store(a + 5 * 4096, 9);
        Assert.Equal(9, cpu.Load<int>(a + 5 * 4096));
    }

    [Fact]
    public void UnmapFreesFramesAndTablesAfterGracePeriod()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 64 << 20 });
        int baseline = space.FramesInUse;
        ulong a = space.Map(0, 4 << 20, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using (Cpu cpu = space.AttachCpu())
        {
            for (ulong p = a; p < a + (4 << 20); p += 4096)
            {
                cpu.Store(p, 1);
            }
        }
        Assert.True(space.FramesInUse >= baseline + 1024);
        space.Unmap(a, 4 << 20);
        Assert.Equal(0, space.ResidentPages);
        Assert.Equal(1, space.PageTablePages);
        Assert.Equal(baseline, space.FramesInUse);
        Assert.Equal(0, space.MapCount);
    }

    [Fact]
    public void SpansCrossPagesAndCompareExchangeWorks()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 64 << 20 });
        ulong a = space.Map(0, 3 * 4096, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using Cpu cpu = space.AttachCpu();
        byte[] data = Enumerable.Range(0, 6000).Select(i => (byte)i).ToArray();
        cpu.Write(a + 3000, data);
        var back = new byte[6000];
        cpu.Read(a + 3000, back);
        Assert.Equal(data, back);
        cpu.Store(a + 4094, 0x0102030405060708L);
        Assert.Equal(0x0102030405060708L, cpu.Load<long>(a + 4094));
        Assert.Equal(0, cpu.CompareExchange(a + 10000, 5, 0));
        Assert.Equal(5, cpu.CompareExchange(a + 10000, 6, 0));
        Assert.Equal(5, cpu.Load<int>(a + 10000));
        Assert.Equal(AccessOutcome.BusError, cpu.TryCompareExchange(a + 10001, 1, 0, out int _));
    }

    [Fact]
    public void PopulateFaultsEveryPageInAndCountsThem()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 64 << 20 });
        ulong a = space.Map(0, 64 * 4096, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Populate);
        Assert.Equal(64, space.ResidentPages);
        Assert.True(space.IsResident(a + 63 * 4096));
        ulong r = space.Map(0, 8 * 4096, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Populate);
        Assert.True(space.IsResident(r));
        Assert.Equal(64, space.ResidentPages);
        Assert.Contains("Rss:                 256 kB", space.GetSmaps());
    }

    [Fact]
    public void SmapsAndMapsUseTheKernelFormat()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 64 << 20 });
        ulong a = space.Map(0x10000000, 4 * 4096, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1);
        Assert.Equal("10000000-10004000 rw-p 00000000 00:00 0 \n", space.GetMaps());
        string smaps = space.GetSmaps();
        Assert.Contains("Size:                 16 kB\n", smaps);
        Assert.Contains("Rss:                   4 kB\n", smaps);
        Assert.Contains("Anonymous:             4 kB\n", smaps);
        Assert.Contains("Referenced:            4 kB\n", smaps);
        Assert.Contains("VmFlags: rd wr mr mw me ac", smaps);
    }
}
