using Faultline.Host;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Conformance;

/// <summary>
/// The host kernel is the oracle for pagemap: after the same sequence of mmap (private and shared anonymous), writes,
/// reads, <c>clear_refs</c>, mprotect, mremap, MADV_DONTNEED and munmap, bits 63 (present), 61 (file page or shared
/// anonymous memory) and 56 (mapped once) of every page must agree, and bit 55 (soft-dirty) too where the host kernel
/// has <c>CONFIG_MEM_SOFT_DIRTY</c> (probed: a page written after <c>clear_refs</c> reads soft-dirty); Faultline's
/// soft-dirty tracking is switched to what the host has, and the log says which. A fixed sequence on each fault path,
/// then random ones; a failure prints the seed and the history.
/// </summary>
[Collection(HostRegionCollection.Name)]
public class SoftDirtyConformanceTests
{
    private const ulong Page = MirroredSpace.Page;
    private const int Pages = 96;
    private const int Sequences = 60;
    private const int Steps = 30;
    private const int BaseSeed = 20261204;

    private readonly ITestOutputHelper _output;

    public SoftDirtyConformanceTests(ITestOutputHelper output) => _output = output;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static ulong Compared => HostPagemap.PM_PRESENT | HostPagemap.PM_FILE | HostPagemap.PM_MMAP_EXCLUSIVE
        | (HostSoftDirty.Supported ? HostPagemap.PM_SOFT_DIRTY : 0);

    private string Describe() =>
        HostSoftDirty.Supported
            ? "host has soft-dirty: bits 63, 61, 56 and 55 compared"
            : "host kernel without CONFIG_MEM_SOFT_DIRTY: bit 55 not compared (skipped), bits 63, 61 and 56 compared";

    [Theory]
    [MemberData(nameof(Paths))]
    public void AFixedSequenceMatchesTheHostPagemap(FaultPath path)
    {
        _output.WriteLine(Describe());
        RunFixedSequence(path);
    }

    [HostSoftDirtyFact]
    public void SoftDirtyBitsMatchTheHostOnEveryFaultPath()
    {
        Assert.NotEqual(0UL, Compared & HostPagemap.PM_SOFT_DIRTY);
        foreach (FaultPath path in new[] { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock })
        {
            RunFixedSequence(path);
        }
    }

    private static void RunFixedSequence(FaultPath path)
    {
        using var region = new HostRegion(Pages * Page);
        using var mirror = new MirroredSpace(region, path, softDirty: HostSoftDirty.Supported);
        ulong s = mirror.Start;
        int rw = Linux.PROT_READ | Linux.PROT_WRITE;
        var steps = new List<Func<string?>>
        {
            () => Errs(mirror.Map(s, 16 * Page, rw, Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED)),
            () => Errs(mirror.Map(s + 32 * Page, 8 * Page, rw, Linux.MAP_SHARED | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED)),
            () => TouchAll(mirror, s, [0, 1, 2, 3, 4, 5, 6, 7], write: true),
            () => TouchAll(mirror, s + 32 * Page, [0, 1, 2, 3], write: true),
            () => TouchAll(mirror, s, [8], write: false),
            () => TouchAll(mirror, s + 32 * Page, [4], write: false),
            () => ClearRefs(mirror),
            () => TouchAll(mirror, s, [2, 5], write: true),
            () => TouchAll(mirror, s + 32 * Page, [1, 4], write: true),
            () => Errs(mirror.Protect(s, 9 * Page, Linux.PROT_READ)),
            () => Errs(mirror.Protect(s, 9 * Page, rw)),
            () => TouchAll(mirror, s, [3], write: true),
            () => mirror.Remap(s + 4 * Page, 3 * Page, 3 * Page, Linux.MREMAP_MAYMOVE | Linux.MREMAP_FIXED, s + 64 * Page + 3 * Page),
            () => Errs(mirror.Advise(s + 7 * Page, Page, Linux.MADV_DONTNEED)),
            () => Errs(mirror.Map(s + 16 * Page, 4 * Page, rw, Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED)),
            () => ClearRefs(mirror),
            () => Errs(mirror.Map(s + 20 * Page, 4 * Page, rw, Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED)),
            () => TouchAll(mirror, s, [17, 21], write: true),
        };
        for (int i = 0; i < steps.Count; i++)
        {
            string? failure = steps[i]() ?? mirror.CompareMaps() ?? ComparePageMap(mirror);
            Assert.True(failure is null, $"step {i}: {failure}\n{mirror.History}");
        }
    }

    [Fact]
    public void RandomSequencesMatchTheHostPagemap()
    {
        _output.WriteLine(Describe());
        using var region = new HostRegion(Pages * Page);
        FaultPath[] paths = [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];
        string? only = Environment.GetEnvironmentVariable("FAULTLINE_CONFORMANCE_SEED");
        for (int sequence = 0; sequence < Sequences; sequence++)
        {
            int seed = only is null ? BaseSeed + sequence : int.Parse(only, System.Globalization.CultureInfo.InvariantCulture);
            var random = new Random(seed);
            using var mirror = new MirroredSpace(region, paths[sequence % paths.Length], softDirty: HostSoftDirty.Supported);
            for (int step = 0; step < Steps; step++)
            {
                string? failure = RandomStep(mirror, random) ?? mirror.CompareMaps() ?? ComparePageMap(mirror);
                Assert.True(failure is null, $"seed {seed}, step {step}: {failure}\n{mirror.History}");
            }
            if (only is not null)
            {
                break;
            }
        }
    }

    private static string? RandomStep(MirroredSpace mirror, Random random)
    {
        ulong s = mirror.Start;
        int first = random.Next(Pages - 1);
        int count = 1 + random.Next(Math.Min(12, Pages - 1 - first));
        ulong at = s + (ulong)first * Page, length = (ulong)count * Page;
        int rw = Linux.PROT_READ | Linux.PROT_WRITE;
        switch (random.Next(10))
        {
            case 0:
                return Errs(mirror.Map(at, length, rw, Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED));
            case 1:
                return Errs(mirror.Map(at, length, rw, Linux.MAP_SHARED | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED));
            case 2:
            case 3:
                return mirror.Touch(at, write: true, (byte)random.Next(1, 255));
            case 4:
                return mirror.Touch(at, write: false, 0);
            case 5:
                return ClearRefs(mirror);
            case 6:
                return Errs(mirror.Protect(at, length, random.Next(2) == 0 ? Linux.PROT_READ : rw));
            case 7:
                ulong target = s + (ulong)random.Next(Pages - count) * Page;
                return mirror.Remap(at, length, length, Linux.MREMAP_MAYMOVE | Linux.MREMAP_FIXED, target);
            case 8:
                return Errs(mirror.Advise(at, length, Linux.MADV_DONTNEED));
            default:
                return Errs(mirror.Unmap(at, length));
        }
    }

    private static string? Errs((int Host, int Ours) result) =>
        result.Host == result.Ours ? null : $"errno: host {result.Host}, ours {result.Ours}";

    private static string? TouchAll(MirroredSpace mirror, ulong start, int[] pages, bool write)
    {
        foreach (int page in pages)
        {
            if (mirror.Touch(start + (ulong)page * Page, write, (byte)(page + 1)) is { } failure)
            {
                return failure;
            }
        }
        return null;
    }

    private static string? ClearRefs(MirroredSpace mirror)
    {
        mirror.Log("clear_refs 4");
        if (!HostSoftDirty.ClearRefs())
        {
            return "the host's clear_refs cannot be written";
        }
        mirror.Space.ClearSoftDirty();
        return null;
    }

    private static string? ComparePageMap(MirroredSpace mirror)
    {
        int pages = (int)((mirror.End - mirror.Start) / Page);
        var host = new ulong[pages];
        var ours = new ulong[pages];
        HostPagemap.ReadEntries(mirror.Start, host);
        if (mirror.Space.ReadPageMap(mirror.Start, ours) != Errno.None)
        {
            return "pagemap read failed";
        }
        for (int i = 0; i < pages; i++)
        {
            if ((host[i] & Compared) != (ours[i] & Compared))
            {
                return $"pagemap of page 0x{mirror.Start + (ulong)i * Page:x}: host 0x{host[i] & Compared:x16}, ours 0x{ours[i] & Compared:x16}";
            }
        }
        return null;
    }
}
