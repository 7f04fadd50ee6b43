using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// mseal's refusals (Linux 6.10 semantics, as the host kernel answers them), mincore's result, and msync's EBUSY.
/// </summary>
public class SealMincoreMsyncTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;

    [Fact]
    public void ASealedVmaRefusesUnmapProtectReplaceAndDiscardOfReadOnlyMemory()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        ulong rw = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        ulong ro = space.Map(Base + 8 * Page, 4 * Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal(Errno.None, space.Seal(rw + Page, 2 * Page));
        Assert.Equal(Errno.None, space.Seal(ro, 4 * Page));
        Assert.Equal(4, space.MapCount);
        Assert.Contains(" sl", space.GetSmaps());

        Assert.Equal(Errno.EPERM, space.TryUnmap(rw + Page, Page));
        Assert.Equal(Errno.EPERM, space.TryProtect(rw + Page, Page, Protection.ReadWrite));
        Assert.Equal(Errno.EPERM, space.TryMap(rw + Page, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _));
        Assert.Equal(Errno.None, space.TryAdvise(rw + Page, Page, Advice.DontNeed));
        Assert.Equal(Errno.EPERM, space.TryAdvise(ro, Page, Advice.DontNeed));
        Assert.Equal(Errno.EPERM, space.TryAdvise(ro, Page, Advice.DontFork));
        Assert.Equal(Errno.None, space.TryAdvise(ro, Page, Advice.DontDump));
        // The unsealed first page may go; an unmap reaching the sealed part fails, keeping the split before it.
        Assert.Equal(Errno.EPERM, space.TryUnmap(rw, 2 * Page));
        Assert.Equal(Errno.None, space.TryUnmap(rw, Page));
        Assert.Equal(Errno.ENOMEM, space.Seal(Base, 12 * Page));
    }

    [Fact]
    public void MincoreReportsEveryMappedPageAndRefusesAShortBuffer()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20, MapZeroPageOnRead = true });
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1L);
        cpu.Load<long>(a + 2 * Page);
        var vector = new byte[4];
        Assert.Equal(Errno.None, space.Mincore(a, 4 * Page - 1, vector));
        Assert.Equal([1, 0, 1, 0], vector);
        Assert.Equal(Errno.EFAULT, space.Mincore(a, 4 * Page, new byte[3]));
        Assert.Equal(Errno.ENOMEM, space.Mincore(a, 5 * Page, new byte[5]));
    }

    [Fact]
    public void MsyncInvalidateOfLockedMemoryIsEbusy()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.Locked);
        Assert.Equal(Errno.EBUSY, space.Msync(a, Page, SyncFlags.Invalidate));
        Assert.Equal(Errno.None, space.Msync(a, Page, SyncFlags.Sync));
    }
}
