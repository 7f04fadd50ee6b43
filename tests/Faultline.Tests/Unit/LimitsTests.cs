using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>Guest memory exhaustion and vm.max_map_count: errors as Linux reports them, and nothing else changes.</summary>
public class LimitsTests
{
    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    [Theory]
    [MemberData(nameof(Paths))]
    public void ExhaustedGuestMemoryIsAnOutOfMemoryFaultAndRecoversAfterUnmap(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 128 * 4096 });
        ulong a = space.Map(0, 1 << 20, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        int written = 0;
        AccessOutcome outcome = AccessOutcome.Ok;
        for (ulong p = a; p < a + (1 << 20) && outcome == AccessOutcome.Ok; p += 4096)
        {
            outcome = cpu.TryStore(p, (long)p);
            written += outcome == AccessOutcome.Ok ? 1 : 0;
        }
        Assert.Equal(AccessOutcome.OutOfMemory, outcome);
        Assert.InRange(written, 64, 127);
        Assert.Equal(1, space.GetCounters()["oom"]);
        var ex = Assert.Throws<GuestOutOfMemoryException>(() => cpu.Store(a + (ulong)written * 4096, 1L));
        Assert.Equal(AccessOutcome.OutOfMemory, ex.Outcome);
        for (int i = 0; i < written; i++)
        {
            Assert.Equal((long)(a + (ulong)i * 4096), cpu.Load<long>(a + (ulong)i * 4096));
        }

        space.Unmap(a, 32 * 4096);
        Assert.Equal(AccessOutcome.Ok, cpu.TryStore(a + (ulong)written * 4096, 7L));
        Assert.Equal(7L, other.Load<long>(a + (ulong)written * 4096));
    }

    [Fact]
    public void MaxMapCountRefusesNewVmasAndSplitsAndChangesNothing()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 1 << 20, MaxMapCount = 4 });
        const ulong Base = 0x1000_0000, Page = 4096;
        // Alternating protections keep neighbours from merging: five VMAs (do_mmap refuses only above the limit).
        for (ulong i = 0; i < 5; i++)
        {
            Assert.Equal(Errno.None, space.TryMap(Base + i * 4 * Page, 4 * Page, i % 2 == 0 ? Protection.Read : Protection.ReadWrite,
                MapFlags.PrivateAnonymous | MapFlags.Fixed, out _));
        }
        Assert.Equal(5, space.MapCount);
        string before = space.GetMaps();

        Assert.Equal(Errno.ENOMEM, space.TryMap(Base + 40 * Page, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _));
        Assert.Equal(Errno.ENOMEM, space.TryUnmap(Base + Page, Page));                 // a split in the middle of a VMA
        Assert.Equal(Errno.ENOMEM, space.TryProtect(Base + Page, Page, Protection.ReadWrite));
        Assert.Equal(before, space.GetMaps());

        Assert.Equal(Errno.None, space.TryUnmap(Base, 4 * Page));                      // removing whole VMAs is fine
        Assert.Equal(4, space.MapCount);
    }
}
