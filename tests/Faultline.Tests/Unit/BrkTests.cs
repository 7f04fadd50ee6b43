using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// brk: the heap from the configured start, grown by extending its VMA, shrunk by unmapping, and every refusal
/// answered with the old break as the system call does.
/// </summary>
public class BrkTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Start = 0x1000_0000;

    private static AddressSpace NewSpace(ulong lockLimit = 8 << 20) =>
        new(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20, BrkStart = Start, MemoryLockLimit = lockLimit });

    [Fact]
    public void TheBreakGrowsByExtendingOneVmaAndShrinksByUnmapping()
    {
        using var space = NewSpace();
        Assert.Equal(Start, space.Brk(0));
        Assert.Equal(0, space.MapCount);

        Assert.Equal(Start + 100, space.Brk(Start + 100));
        Assert.Equal([(Start, Start + Page)], space.GetMappings().Select(m => (m.Start, m.End)));
        Assert.Equal(Start + 3 * Page + 5, space.Brk(Start + 3 * Page + 5));
        Assert.Equal([(Start, Start + 4 * Page)], space.GetMappings().Select(m => (m.Start, m.End)));
        Assert.Equal("rw-p", space.GetMappings()[0].Permissions);
        // vma_is_initial_heap: the maps line is named [heap], and smaps shows the brk VMA's flags.
        Assert.Equal($"{Start:x8}-{Start + 4 * Page:x8} rw-p 00000000 00:00 0 ".PadRight(73) + "[heap]\n", space.GetMaps());
        Assert.Contains("VmFlags: rd wr mr mw me ac \n", space.GetSmaps());

        using Cpu cpu = space.AttachCpu();
        cpu.Store(Start + 3 * Page, 9L);
        Assert.Equal(Start + Page, space.Brk(Start + Page));
        Assert.Equal([(Start, Start + Page)], space.GetMappings().Select(m => (m.Start, m.End)));
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(Start + 3 * Page, out long _));
        // Growing again gives fresh zeros.
        Assert.Equal(Start + 4 * Page, space.Brk(Start + 4 * Page));
        Assert.Equal(0L, cpu.Load<long>(Start + 3 * Page));
    }

    [Fact]
    public void RefusalsReturnTheOldBreakAndChangeNothing()
    {
        using var space = NewSpace();
        Assert.Equal(Start + 2 * Page, space.Brk(Start + 2 * Page));
        // Below the heap's start.
        Assert.Equal(Start + 2 * Page, space.Brk(Start - Page));
        // A mapping 4 pages above the break: the break may come no closer than a page below it.
        space.Map(Start + 6 * Page, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal(Start + 2 * Page, space.Brk(Start + 6 * Page));
        Assert.Equal(Start + 2 * Page, space.Brk(Start + 5 * Page + 1));
        Assert.Equal(Start + 5 * Page, space.Brk(Start + 5 * Page));
        // Wrapping past the top.
        Assert.Equal(Start + 5 * Page, space.Brk(ulong.MaxValue));
        // Shrinking over nothing mapped fails: unmap the heap's top first.
        space.Unmap(Start + 3 * Page, 2 * Page);
        Assert.Equal(Start + 5 * Page, space.Brk(Start + 4 * Page));
        Assert.Equal(Start + 2 * Page, space.Brk(Start + 2 * Page));
        Assert.Equal([(Start, Start + 2 * Page), (Start + 6 * Page, Start + 7 * Page)], space.GetMappings().Select(m => (m.Start, m.End)));
    }

    [Fact]
    public void AHeapWhoseTopVmaChangedGrowsIntoANewVma()
    {
        using var space = NewSpace();
        space.Brk(Start + 4 * Page);
        space.Protect(Start + 2 * Page, 2 * Page, Protection.Read);
        Assert.Equal(Start + 6 * Page, space.Brk(Start + 6 * Page));
        Assert.Equal([(Start, Start + 2 * Page), (Start + 2 * Page, Start + 4 * Page), (Start + 4 * Page, Start + 6 * Page)],
            space.GetMappings().Select(m => (m.Start, m.End)));
    }

    [Fact]
    public void MlockallFutureLocksAndPopulatesTheHeapWithinTheLimit()
    {
        using var space = NewSpace(lockLimit: 4 * Page);
        Assert.Equal(Errno.None, space.LockAll(LockAllFlags.Future));
        Assert.Equal(Start + 3 * Page, space.Brk(Start + 3 * Page));
        Assert.Equal(3, space.LockedPages);
        Assert.Equal(3, space.ResidentPages);
        // Two more pages would pass the limit of four.
        Assert.Equal(Start + 3 * Page, space.Brk(Start + 5 * Page));
        Assert.Equal(Start + Page, space.Brk(Start + Page));
        Assert.Equal(1, space.LockedPages);
    }

    [Fact]
    public void ASealedHeapCannotShrink()
    {
        using var space = NewSpace();
        space.Brk(Start + 2 * Page);
        Assert.Equal(Errno.None, space.Seal(Start, 2 * Page));
        Assert.Equal(Start + 2 * Page, space.Brk(Start));
        Assert.Equal(1, space.MapCount);
    }
}
