using Faultline.Host;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Conformance;

/// <summary>
/// mremap against the host kernel, case by case: each case starts from the same layout on both sides, runs one mremap,
/// and compares the errno, the result (where it lies in the region), the maps, pagemap residency, smaps and the data
/// of every page. The cases cover each errno in the order Linux checks them and each way a call succeeds.
/// </summary>
[Collection(HostRegionCollection.Name)]
public class RemapConformanceTests
{
    private const ulong Page = MirroredSpace.Page;
    private const ulong TaskSize = 0x7FFF_FFFF_F000;
    private const int Pages = 64;
    private const int MayMove = Linux.MREMAP_MAYMOVE;
    private const int Fixed = Linux.MREMAP_FIXED;
    private const int DontUnmap = Linux.MREMAP_DONTUNMAP;

    private readonly ITestOutputHelper _output;

    public RemapConformanceTests(ITestOutputHelper output) => _output = output;

    public sealed record Case(string Name, int OldPage, ulong OldLength, ulong NewLength, int Flags, int NewPage, ulong Adjust = 0)
    {
        public override string ToString() => Name;
    }

    // Layout (pages): [0, 8) RW written, hole [8, 16), [16, 24) R, [24, 28) RW written, [28, 32) RW written and locked
    // where the host allows locking, [32, 36) RW untouched, a hole to the end.
    public static TheoryData<Case> Cases => new()
    {
        new("unknown flag", 0, 4 * Page, 4 * Page, 8, 0),
        new("unaligned address", 0, 4 * Page, 4 * Page, 0, 0, Adjust: 1),
        new("new length 0", 0, 4 * Page, 0, 0, 0),
        new("new length wraps to 0", 0, 4 * Page, ulong.MaxValue - 100, MayMove, 0),
        new("new length past TASK_SIZE", 0, 4 * Page, TaskSize + Page, MayMove, 0),
        new("FIXED without MAYMOVE", 0, 4 * Page, 4 * Page, Fixed, 40),
        new("DONTUNMAP without MAYMOVE", 0, 4 * Page, 4 * Page, DontUnmap, 40),
        new("DONTUNMAP resizing", 0, 4 * Page, 2 * Page, MayMove | DontUnmap, 40),
        new("FIXED overlapping", 0, 4 * Page, 4 * Page, MayMove | Fixed, 2),
        new("FIXED to an unaligned address", 0, 4 * Page, 4 * Page, MayMove | Fixed, 40, Adjust: 1 << 20),
        new("old length 0 of a private mapping", 0, 0, 4 * Page, MayMove, 0),
        new("in a hole", 8, Page, 2 * Page, MayMove, 0),
        new("growth across the end of a mapping", 0, 9 * Page, 10 * Page, MayMove, 0),
        new("growth blocked without MAYMOVE", 16, 8 * Page, 9 * Page, 0, 0),
        new("growth of a middle part without MAYMOVE", 0, 4 * Page, 5 * Page, 0, 0),
        new("same length past the end: a no-op", 0, 12 * Page, 12 * Page, 0, 0),
        new("shrink", 0, 8 * Page, 3 * Page, 0, 0),
        new("shrink across mappings", 16, 16 * Page, 2 * Page, 0, 0),
        new("shrink with an unaligned new length", 0, 8 * Page, 3 * Page - 100, 0, 0),
        new("growth in place into the hole", 0, 8 * Page, 12 * Page, 0, 0),
        new("growth in place to the next mapping", 0, 8 * Page, 16 * Page, 0, 0),
        new("growth in place of a locked mapping", 28, 4 * Page, 8 * Page, MayMove, 0),
        new("growth moved out of the region", 24, 4 * Page, 8 * Page, MayMove, 0),
        new("FIXED over a mapping", 0, 4 * Page, 4 * Page, MayMove | Fixed, 18),
        new("FIXED into the hole", 24, 4 * Page, 4 * Page, MayMove | Fixed, 10),
        new("FIXED growing", 24, 4 * Page, 6 * Page, MayMove | Fixed, 40),
        new("FIXED shrinking", 0, 8 * Page, 2 * Page, MayMove | Fixed, 40),
        new("FIXED of several mappings with a hole", 0, 28 * Page, 28 * Page, MayMove | Fixed, 32),
        new("FIXED starting in a hole", 8, 12 * Page, 12 * Page, MayMove | Fixed, 40),
        new("FIXED of a locked mapping", 28, 4 * Page, 4 * Page, MayMove | Fixed, 48),
        new("FIXED of an untouched mapping next to a compatible one", 32, 4 * Page, 4 * Page, MayMove | Fixed, 36),
        new("FIXED back next to where it came from", 24, 4 * Page, 4 * Page, MayMove | Fixed, 4),
        new("DONTUNMAP with a free hint", 24, 4 * Page, 4 * Page, MayMove | DontUnmap, 40),
        new("DONTUNMAP of part of a mapping", 2, 4 * Page, 4 * Page, MayMove | DontUnmap, 40),
        new("DONTUNMAP with a taken hint", 24, 4 * Page, 4 * Page, MayMove | DontUnmap, 16),
        new("DONTUNMAP FIXED", 0, 8 * Page, 8 * Page, MayMove | Fixed | DontUnmap, 40),
        new("DONTUNMAP of a locked mapping", 28, 4 * Page, 4 * Page, MayMove | Fixed | DontUnmap, 48),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesTheHostKernel(Case c)
    {
        _output.WriteLine(HostFacts.Current.Describe());
        using var region = new HostRegion(Pages * Page);
        using var mirror = new MirroredSpace(region);
        ulong s = mirror.Start;
        Assert.Null(Setup(mirror, s));
        string? difference = mirror.Remap(s + (ulong)c.OldPage * Page + (c.Adjust == 1 ? 1UL : 0), c.OldLength, c.NewLength, c.Flags,
            s + (ulong)c.NewPage * Page + (c.Adjust == 1 << 20 ? 123UL : 0));
        difference ??= mirror.CompareMaps() ?? mirror.CompareResidency() ?? mirror.CompareSmaps() ?? CompareData(mirror);
        Assert.True(difference is null, $"{difference}\nhistory:\n{mirror.History}");
    }

    // Layout (pages): [0, 8) shared RW written, locked where the host allows locking, a hole [8, 16), [16, 24) shared
    // RW written, a hole to the end. Each mapping is a shmem object of its own length.
    public static TheoryData<Case> SharedCases => new()
    {
        new("old length 0 of a locked shared mapping", 2, 0, 4 * Page, MayMove | Fixed, 40),
        new("old length 0 with a new address found", 18, 0, 4 * Page, MayMove, 0),
        new("old length 0 reaching past the object", 20, 0, 8 * Page, MayMove | Fixed, 40),
        new("shared growth in place past the object", 16, 8 * Page, 12 * Page, 0, 0),
        new("locked shared growth in place past the object", 0, 8 * Page, 12 * Page, 0, 0),
        new("shared FIXED move of part of a mapping", 18, 4 * Page, 4 * Page, MayMove | Fixed, 40),
        new("shared FIXED growing", 16, 8 * Page, 10 * Page, MayMove | Fixed, 40),
        new("shared DONTUNMAP", 16, 8 * Page, 8 * Page, MayMove | Fixed | DontUnmap, 40),
        new("locked shared DONTUNMAP", 0, 8 * Page, 8 * Page, MayMove | Fixed | DontUnmap, 40),
    };

    [Theory]
    [MemberData(nameof(SharedCases))]
    public void SharedMappingMatchesTheHostKernel(Case c)
    {
        _output.WriteLine(HostFacts.Current.Describe());
        using var region = new HostRegion(Pages * Page);
        using var mirror = new MirroredSpace(region);
        ulong s = mirror.Start;
        Assert.Null(SetupShared(mirror, s));
        string? difference = mirror.Remap(s + (ulong)c.OldPage * Page, c.OldLength, c.NewLength, c.Flags, s + (ulong)c.NewPage * Page);
        difference ??= mirror.CompareMaps() ?? mirror.CompareResidency() ?? mirror.CompareSmaps() ?? CompareData(mirror)
            ?? mirror.CompareSmaps();
        Assert.True(difference is null, $"{difference}\nhistory:\n{mirror.History}");
    }

    private static string? SetupShared(MirroredSpace mirror, ulong s)
    {
        const int rw = Linux.PROT_READ | Linux.PROT_WRITE;
        const int shared = Linux.MAP_SHARED | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED;
        (int Host, int Ours)[] steps =
        [
            mirror.Unmap(s, Pages * Page),
            mirror.Map(s, 8 * Page, rw, shared | (HostFacts.Current.HasCapIpcLock ? Linux.MAP_LOCKED : 0)),
            mirror.Map(s + 16 * Page, 8 * Page, rw, shared),
        ];
        if (steps.Any(r => r.Host != 0 || r.Ours != 0))
        {
            return "setup failed";
        }
        foreach (int page in (int[])[0, 1, 2, 3, 5, 7, 16, 17, 18, 20, 21, 23])
        {
            if (mirror.Touch(s + (ulong)page * Page + 8, write: true, (byte)(page + 1)) is { } difference)
            {
                return difference;
            }
        }
        return null;
    }

    private static string? Setup(MirroredSpace mirror, ulong s)
    {
        const int rw = Linux.PROT_READ | Linux.PROT_WRITE;
        const int anon = Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED;
        (int Host, int Ours)[] steps =
        [
            mirror.Unmap(s, Pages * Page),
            mirror.Map(s, 8 * Page, rw, anon),
            mirror.Map(s + 16 * Page, 8 * Page, Linux.PROT_READ, anon),
            mirror.Map(s + 24 * Page, 4 * Page, rw, anon),
            mirror.Map(s + 28 * Page, 4 * Page, rw, anon | (HostFacts.Current.HasCapIpcLock ? Linux.MAP_LOCKED : 0)),
            mirror.Map(s + 32 * Page, 4 * Page, rw, anon),
        ];
        if (steps.Any(r => r.Host != 0 || r.Ours != 0))
        {
            return "setup failed";
        }
        foreach (int page in (int[])[0, 1, 2, 3, 5, 7, 24, 26, 28, 29])
        {
            if (mirror.Touch(s + (ulong)page * Page + 8, write: true, (byte)(page + 1)) is { } difference)
            {
                return difference;
            }
        }
        return null;
    }

    // Reads a byte of every page on both sides.
    private static string? CompareData(MirroredSpace mirror)
    {
        for (ulong p = mirror.Start; p < mirror.End; p += Page)
        {
            if (mirror.Touch(p + 8, write: false, 0) is { } difference)
            {
                return difference;
            }
        }
        return null;
    }
}
