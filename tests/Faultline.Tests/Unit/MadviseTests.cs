using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// madvise beyond what the host comparison shows: MADV_DONTNEED's zeros, MADV_FREE's lazily freed state (smaps
/// LazyFree, kept by a write), VMA splitting for flag advice and merging back, the flags in smaps, and the errno of
/// advice that a mapping's kind refuses.
/// </summary>
public class MadviseTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static AddressSpace NewSpace(FaultPath path = FaultPath.MmapLock) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20, MapZeroPageOnRead = true });

    [Theory]
    [MemberData(nameof(Paths))]
    public void DontNeedDropsThePagesAndTheNextTouchReadsZeros(FaultPath path)
    {
        using var space = NewSpace(path);
        ulong a = SpaceHelpers.MapFixed(space, Base, 8 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        for (ulong p = a; p < a + 8 * Page; p += Page)
        {
            cpu.Store(p, 0x1234L);
        }
        Assert.Equal(8, space.ResidentPages);

        space.Advise(a + 2 * Page, 4 * Page, Advice.DontNeed);

        Assert.Equal(4, space.ResidentPages);
        Assert.False(space.IsResident(a + 2 * Page));
        Assert.Equal(0L, cpu.Load<long>(a + 2 * Page));
        Assert.Equal(0x1234L, cpu.Load<long>(a + Page));
        Assert.Equal(0x1234L, cpu.Load<long>(a + 6 * Page));
        Assert.Equal(1, space.MapCount);
    }

    [Fact]
    public void FreeMakesPagesLazilyFreeableAndAWriteKeepsThem()
    {
        using var space = NewSpace();
        ulong a = SpaceHelpers.MapFixed(space, Base, 4 * Page);
        using Cpu cpu = space.AttachCpu();
        for (ulong p = a; p < a + 4 * Page; p += Page)
        {
            cpu.Store(p, 7L);
        }
        Assert.Contains("Private_Dirty:        16 kB", space.GetSmaps());

        space.Advise(a, 4 * Page, Advice.Free);

        string smaps = space.GetSmaps();
        Assert.Contains("LazyFree:             16 kB", smaps);
        Assert.Contains("Private_Dirty:         0 kB", smaps);
        Assert.Contains("Rss:                  16 kB", smaps);
        // No memory pressure yet: the pages stay, with their data. A read keeps them clean; a write dirties one.
        Assert.Equal(7L, cpu.Load<long>(a));
        cpu.Store(a + Page, 8L);
        smaps = space.GetSmaps();
        Assert.Contains("LazyFree:             12 kB", smaps);
        Assert.Contains("Private_Dirty:         4 kB", smaps);
        Assert.Equal(8L, cpu.Load<long>(a + Page));
        Assert.Equal(4, space.ResidentPages);
    }

    [Fact]
    public void FlagAdviceSplitsTheVmaAndTheOppositeAdviceMergesItBack()
    {
        using var space = NewSpace();
        ulong a = SpaceHelpers.MapFixed(space, Base, 8 * Page);
        (Advice Set, Advice Clear, string Shown)[] pairs =
        [
            (Advice.DontFork, Advice.DoFork, "dc"), (Advice.WipeOnFork, Advice.KeepOnFork, "wf"),
            (Advice.DontDump, Advice.DoDump, "dd"), (Advice.HugePage, Advice.Normal, "hg"), (Advice.Random, Advice.Normal, "rr"),
            (Advice.Sequential, Advice.Normal, "sr"),
        ];
        foreach ((Advice set, Advice clear, string shown) in pairs)
        {
            space.Advise(a + 2 * Page, 3 * Page, set);
            Assert.Equal(3, space.MapCount);
            Assert.Equal([a, a + 2 * Page, a + 5 * Page], space.GetMappings().Select(m => m.Start));
            Assert.Contains($" {shown} ", VmFlagsOf(space, 1) + " ");
            Assert.DoesNotContain($" {shown} ", VmFlagsOf(space, 0) + " ");

            if (clear == Advice.Normal && set == Advice.HugePage)
            {
                space.Advise(a + 2 * Page, 3 * Page, Advice.NoHugePage);
                Assert.Contains(" nh ", VmFlagsOf(space, 1) + " ");
                Assert.DoesNotContain(" hg ", VmFlagsOf(space, 1) + " ");
                // HUGEPAGE and NOHUGEPAGE have no undo but each other: start again from a fresh mapping.
                space.Unmap(a, 8 * Page);
                a = SpaceHelpers.MapFixed(space, Base, 8 * Page);
                continue;
            }
            space.Advise(a, 8 * Page, clear);
            Assert.Equal(1, space.MapCount);
        }
    }

    [Fact]
    public void AdviceThatAMappingRefusesGetsLinuxErrno()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20, CapIpcLock = true });
        using var backing = new InMemoryBacking(space.Descriptor.Memory, 8);
        ulong anon = SpaceHelpers.MapFixed(space, Base, 4 * Page);
        ulong backed = space.MapBacking(Base + 8 * Page, 4 * Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Fixed, backing, 0);
        Assert.Equal(Errno.EINVAL, space.TryAdvise(backed, Page, Advice.WipeOnFork));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(backed, Page, Advice.Free));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(anon, Page, Advice.Remove));
        Assert.Equal(Errno.EACCES, space.TryAdvise(backed, Page, Advice.Remove));
        Assert.Equal(Errno.None, space.TryAdvise(backed, Page, Advice.DontNeed));

        Assert.Equal(Errno.None, space.Lock(anon, 4 * Page));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(anon, Page, Advice.DontNeed));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(anon, Page, Advice.Free));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(anon, Page, Advice.Cold));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(anon, Page, Advice.PageOut));
        Assert.Equal(4, space.ResidentPages);
        Assert.Equal(Errno.None, space.TryAdvise(anon, Page, Advice.DontNeedLocked));
        Assert.Equal(3, space.ResidentPages);
        Assert.Equal(Errno.EINVAL, space.TryAdvise(anon, Page, (Advice)12));
    }

    [Fact]
    public void PopulateWriteFaultsEveryPageInAndStopsAtAHoleWithEnomem()
    {
        using var space = NewSpace();
        ulong a = SpaceHelpers.MapFixed(space, Base, 4 * Page);
        SpaceHelpers.MapFixed(space, Base + 6 * Page, 2 * Page);

        Assert.Equal(Errno.ENOMEM, space.TryAdvise(a, 8 * Page, Advice.PopulateWrite));

        Assert.Equal(4, space.ResidentPages);
        Assert.Contains("Private_Dirty:        16 kB", space.GetSmaps());
        Assert.Equal(Errno.None, space.TryAdvise(a + 6 * Page, 2 * Page, Advice.PopulateRead));
        // A read fault maps the zero page here: present, not counted in Rss.
        Assert.True(space.IsResident(a + 6 * Page));
        Assert.Equal(4, space.ResidentPages);
    }

    [Fact]
    public void ASplitPastTheMapCountIsEagain()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20, MaxMapCount = 2 });
        ulong a = SpaceHelpers.MapFixed(space, Base, 8 * Page);
        Assert.Equal(Errno.EAGAIN, space.TryAdvise(a + Page, Page, Advice.DontDump));
        Assert.Equal(1, space.MapCount);
    }

    private static string VmFlagsOf(AddressSpace space, int vma) =>
        space.GetSmaps().Split('\n').Where(l => l.StartsWith("VmFlags:", StringComparison.Ordinal)).ElementAt(vma);
}
