using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>What a user sees when something fails: exceptions that carry the call and its arguments, out of memory told apart from SIGSEGV.</summary>
public class ErrorTests
{
    private const ulong Page = 4096;

    [Fact]
    public void AFailedMapCarriesItsArgumentsInPropertiesAndMessage()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });

        var error = Assert.Throws<MemoryOperationException>(() =>
            space.Map(0x10001, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed));

        Assert.Equal("mmap", error.Operation);
        Assert.Equal(Errno.EINVAL, error.Error);
        Assert.Equal(0x10001UL, error.Address);
        Assert.Equal(2 * Page, error.Length);
        Assert.Equal(Protection.ReadWrite, error.Protection);
        Assert.Equal(MapFlags.PrivateAnonymous | MapFlags.Fixed, error.Flags);
        Assert.Equal("mmap(0x10001, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED|MAP_ANONYMOUS) failed: EINVAL (Invalid argument)",
            error.Message);
        Assert.Equal(0, space.MapCount);
    }

    [Fact]
    public void AFailedSharedAnonymousMapNamesItsFlags()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });

        var error = Assert.Throws<MemoryOperationException>(() => space.Map(0, 0, Protection.None, MapFlags.Shared | MapFlags.Anonymous | (MapFlags)0x4000_0000));

        Assert.Equal("mmap(0x0, 0, PROT_NONE, MAP_SHARED|MAP_ANONYMOUS|0x40000000) failed: EINVAL (Invalid argument)", error.Message);
    }

    [Fact]
    public void FailedUnmapAndProtectCarryTheirArguments()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        ulong a = space.Map(0, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);

        var unmap = Assert.Throws<MemoryOperationException>(() => space.Unmap(a + 1, Page));
        var protect = Assert.Throws<MemoryOperationException>(() => space.Protect(a + 8 * Page, Page, Protection.Read | Protection.Execute));

        Assert.Equal($"munmap(0x{a + 1:x}, 4096) failed: EINVAL (Invalid argument)", unmap.Message);
        Assert.Null(unmap.Protection);
        Assert.Null(unmap.Flags);
        Assert.Equal($"mprotect(0x{a + 8 * Page:x}, 4096, PROT_READ|PROT_EXEC) failed: ENOMEM (Cannot allocate memory)", protect.Message);
        Assert.Equal(Protection.Read | Protection.Execute, protect.Protection);
        Assert.Null(protect.Flags);
    }

    [Fact]
    public void AnOperationWithoutArgumentsPrintsItsNameAlone() =>
        Assert.Equal("brk() failed: ENOMEM (Cannot allocate memory)", new MemoryOperationException("brk", Errno.ENOMEM).Message);

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void GuestOutOfMemoryIsItsOwnExceptionNotASegmentationFault(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 64 * 4096 });
        ulong a = space.Map(0, 1 << 20, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using Cpu cpu = space.AttachCpu();

        GuestAccessException? thrown = null;
        for (ulong p = a; p < a + (1 << 20) && thrown is null; p += Page)
        {
            thrown = Record.Exception(() => cpu.Store(p, 1L)) as GuestAccessException;
        }

        var oom = Assert.IsType<GuestOutOfMemoryException>(thrown);
        Assert.Equal(AccessOutcome.OutOfMemory, oom.Outcome);
        Assert.Equal(AccessKind.Write, oom.Access);
        Assert.Contains($"0x{oom.Address:x}", oom.Message);
        Assert.Contains("out of memory", oom.Message);
        Assert.Equal(1, space.GetCounters()[VmCounters.OutOfMemory]);
    }

    [Fact]
    public void ASegmentationFaultIsAGuestAccessExceptionAndNeverOutOfMemory()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        using Cpu cpu = space.AttachCpu();

        var segv = Assert.Throws<SegmentationFaultException>(() => cpu.Load<long>(0x7000_0000));

        Assert.IsAssignableFrom<GuestAccessException>(segv);
        Assert.Equal(1, segv.SignalCode);
        Assert.Equal("SIGSEGV (SEGV_MAPERR) at 0x70000000 on read", segv.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new SegmentationFaultException(0, AccessKind.Read, AccessOutcome.OutOfMemory));
    }

    [Fact]
    public void MappingInfoPrintsItsMapsLineInHex()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        ulong a = space.Map(0x7f12_3456_0000, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.FixedNoReplace);

        MappingInfo mapping = Assert.Single(space.GetMappings());

        Assert.Equal($"{a:x}-{a + 2 * Page:x} rw-p 00000000 00:00 0", mapping.ToString());
        Assert.Equal("7f1234560000-7f1234562000 rw-p 00000000 00:00 0", mapping.ToString());
        Assert.Equal(space.GetMaps().TrimEnd('\n', ' '), mapping.ToString());
    }

    [Fact]
    public void MapsOfADisposedSpaceThrowLikeMap()
    {
        var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        space.Map(0, Page, Protection.Read, MapFlags.PrivateAnonymous);
        space.Dispose();

        Assert.Throws<ObjectDisposedException>(() => space.Map(0, Page, Protection.Read, MapFlags.PrivateAnonymous));
        var maps = Assert.Throws<ObjectDisposedException>(() => space.GetMaps());
        Assert.Equal(typeof(AddressSpace).FullName, maps.ObjectName);
        Assert.Throws<ObjectDisposedException>(() => space.GetSmaps());
        Assert.Throws<ObjectDisposedException>(() => space.GetMappings());
    }
}
