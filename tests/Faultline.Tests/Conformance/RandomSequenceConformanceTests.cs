using Faultline.Host;
using Faultline.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Conformance;

/// <summary>
/// The host kernel is the oracle: random sequences of mmap (private or shared anonymous memory), munmap, mprotect,
/// mremap, madvise, mlock/mlock2/munlock, mincore, msync, brk, mseal (where the host has it) and accesses at fixed
/// addresses inside a reserved region, run on the host
/// and on Faultline; after every step the errno, maps lines, access outcomes, data and pagemap residency must agree,
/// and smaps Rss, Anonymous, Private_Dirty, Locked and VmFlags every ten steps and at the end. The
/// sequences cycle through the three fault paths. Faultline maps the zero page on a read fault exactly when the probed
/// host does, and locks memory as the host's capability and limit allow; the test log says which. A failure prints
/// the seed and the history; set FAULTLINE_CONFORMANCE_SEED to replay one sequence.
/// </summary>
/// <remarks>
/// The top of the region is the heap: mmap, munmap and mprotect stay below <see cref="HeapPage"/> - 1, and the page
/// just below the heap's start stays unmapped, so the host side of brk (see <see cref="MirroredSpace.Brk"/>) merges as
/// the kernel's brk does. Every tenth sequence may seal; it runs in a region of its own, left behind afterwards
/// since sealed mappings cannot be unmapped. MADV_PAGEOUT is not drawn: the host reclaims lazily freed pages with it,
/// and Faultline has no reclaim yet.
/// </remarks>
[Collection(HostRegionCollection.Name)]
public class RandomSequenceConformanceTests
{
    private const int Pages = 128;
    private const int HeapPage = 100;
    private const int Sequences = 510;
    private const int Steps = 40;
    private const int BaseSeed = 20261121;

    private static readonly int[] Prots =
    [
        Linux.PROT_NONE, Linux.PROT_READ, Linux.PROT_READ | Linux.PROT_WRITE,
        Linux.PROT_READ | Linux.PROT_EXEC, Linux.PROT_READ | Linux.PROT_WRITE | Linux.PROT_EXEC,
    ];

    private static readonly int[] Advices =
    [
        Linux.MADV_DONTNEED, Linux.MADV_DONTNEED, Linux.MADV_FREE, Linux.MADV_FREE, Linux.MADV_WILLNEED, Linux.MADV_DONTFORK,
        Linux.MADV_DOFORK, 18, 19, Linux.MADV_HUGEPAGE, Linux.MADV_NOHUGEPAGE, Linux.MADV_DONTDUMP, Linux.MADV_DODUMP, 20, 22, 23,
        Linux.MADV_REMOVE, Linux.MADV_NORMAL, Linux.MADV_RANDOM, Linux.MADV_SEQUENTIAL, 24, 99,
    ];

    private static readonly FaultPath[] AllPaths = [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    private readonly ITestOutputHelper _output;

    public RandomSequenceConformanceTests(ITestOutputHelper output) => _output = output;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static bool HostHasMseal { get; } = LibC.MsealErrno(0, 0) != Faultline.Host.Errno.ENOSYS;

    [Fact]
    public void FiveHundredSequencesOfFortyStepsAcrossTheFaultPathsMatchTheHostKernel()
    {
        _output.WriteLine(HostFacts.Current.Describe());
        _output.WriteLine(MirroredSpace.HostMode);
        _output.WriteLine(HostHasMseal ? "host has mseal: every tenth sequence seals" : "host has no mseal (ENOSYS): not drawn");
        string? replay = Environment.GetEnvironmentVariable("FAULTLINE_CONFORMANCE_SEED");
        using var region = new HostRegion(Pages * MirroredSpace.Page);
        IEnumerable<int> seeds = replay is null ? Enumerable.Range(BaseSeed, Sequences) : [int.Parse(replay)];
        int sequences = 0, steps = 0, remaps = 0, remapped = 0;
        var perPath = new int[AllPaths.Length];
        foreach (int seed in seeds)
        {
            int path = seed % AllPaths.Length;
            (int sequenceSteps, _, int calls, int succeeded) = RunSequence(region, seed, AllPaths[path]);
            steps += sequenceSteps;
            remaps += calls;
            remapped += succeeded;
            perPath[path]++;
            sequences++;
        }
        _output.WriteLine($"{sequences} sequences ({string.Join(", ", AllPaths.Select((p, i) => $"{perPath[i]} {p}"))}), {steps} steps, "
            + $"{remaps} mremap calls ({remapped} succeeded), 0 differences (seeds {BaseSeed}..{BaseSeed + Sequences - 1})");
        Assert.True(sequences >= (replay is null ? Sequences : 1));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void EveryFaultPathMatchesTheHostKernel(FaultPath path)
    {
        _output.WriteLine(HostFacts.Current.Describe());
        _output.WriteLine(MirroredSpace.HostMode);
        using var region = new HostRegion(Pages * MirroredSpace.Page);
        long handledOnPath = 0;
        for (int seed = BaseSeed + 10_000; seed < BaseSeed + 10_040; seed++)
        {
            handledOnPath += RunSequence(region, seed, path).HandledOnPath;
        }
        _output.WriteLine($"faults handled on the {path} path: {handledOnPath}");
        Assert.True(handledOnPath > 0, $"no fault was handled on the {path} path");
    }

    // Returns the steps run, the faults the chosen path completed itself (not by falling back), and the mremap calls
    // made and those that succeeded.
    private static (int Steps, long HandledOnPath, int Remaps, int Remapped) RunSequence(HostRegion shared, int seed, FaultPath path)
    {
        var random = new Random(seed);
        bool seals = HostHasMseal && seed % 10 == 0;
        // A sealed mapping cannot be replaced by the next sequence's reset: a sealing sequence gets a region of its own.
        HostRegion region = seals ? new HostRegion(Pages * MirroredSpace.Page) : shared;
        try
        {
            using var mirror = new MirroredSpace(region, path, brkStart: region.Start + HeapPage * MirroredSpace.Page);
            Check(mirror, seed, -1, mirror.CompareMaps());
            int step;
            for (step = 0; step < Steps; step++)
            {
                string? difference = Step(mirror, random, seals);
                Check(mirror, seed, step, difference ?? mirror.CompareMaps() ?? mirror.CompareResidency());
                if (step % 10 == 9)
                {
                    Check(mirror, seed, step, mirror.CompareSmaps());
                }
            }
            Check(mirror, seed, step, mirror.CompareSmaps());
            return (step, mirror.Space.GetCounters()[SpaceHelpers.HandledOnPathCounter(path)], mirror.RemapCalls, mirror.RemapsSucceeded);
        }
        finally
        {
            if (seals)
            {
                region.Dispose();
            }
        }
    }

    private static string? Step(MirroredSpace mirror, Random random, bool seals)
    {
        // mmap, munmap and mprotect stay below the page under the heap; the other calls range over the whole region.
        int below = HeapPage - 1;
        int first = random.Next(below);
        int count = 1 + random.Next(Math.Min(24, below - first));
        ulong address = mirror.Start + (ulong)first * MirroredSpace.Page;
        ulong length = (ulong)count * MirroredSpace.Page;
        int anyFirst = random.Next(Pages);
        ulong anyAddress = mirror.Start + (ulong)anyFirst * MirroredSpace.Page;
        ulong anyLength = (ulong)(1 + random.Next(Math.Min(24, Pages - anyFirst))) * MirroredSpace.Page;
        int prot = Prots[random.Next(Prots.Length)];
        int roll = random.Next(100);
        (int Host, int Ours) result;
        if (roll < 24)
        {
            // A third of the mappings are shared anonymous memory (a shmem object each): its residency is the host's
            // fault-around and, for mincore, the object's page cache.
            int flags = (random.Next(3) == 0 ? Linux.MAP_SHARED : Linux.MAP_PRIVATE) | Linux.MAP_ANONYMOUS
                | (random.Next(10) == 0 ? Linux.MAP_FIXED_NOREPLACE : Linux.MAP_FIXED)
                | (random.Next(5) == 0 ? Linux.MAP_NORESERVE : 0)
                | (random.Next(12) == 0 ? Linux.MAP_LOCKED : 0)
                | (random.Next(12) == 0 ? Linux.MAP_POPULATE : 0);
            result = mirror.Map(address, length, prot, flags);
        }
        else if (roll < 32)
        {
            result = mirror.Unmap(address, length);
        }
        else if (roll < 44)
        {
            result = mirror.Protect(address, length, prot);
        }
        else if (roll < 56)
        {
            result = mirror.Advise(anyAddress, anyLength, Advices[random.Next(Advices.Length)]);
        }
        else if (roll < 62)
        {
            // An unaligned start now and then: mlock and munlock widen the range to whole pages.
            ulong offset = random.Next(4) == 0 ? (ulong)random.Next(1, 4096) : 0;
            result = random.Next(3) == 0
                ? mirror.Unlock(anyAddress + offset, anyLength)
                : mirror.Lock(anyAddress + offset, anyLength, random.Next(3) == 0 ? 1u : 0u);
        }
        else if (roll < 66)
        {
            return mirror.Mincore(anyAddress, anyLength);
        }
        else if (roll < 68)
        {
            result = mirror.Msync(anyAddress, anyLength, random.Next(8));
        }
        else if (roll < 75)
        {
            // Up to the last page but one of the region, so the heap never needs room beyond it.
            ulong target = mirror.BrkStart + (ulong)random.Next(-2, (Pages - HeapPage - 1) * 4) * (MirroredSpace.Page / 4);
            return mirror.Brk(target);
        }
        else if (roll < 77 && seals)
        {
            result = mirror.Seal(anyAddress, anyLength);
        }
        else if (roll < 84)
        {
            return Remap(mirror, random, first, count);
        }
        else
        {
            for (int i = 0; i < 4; i++)
            {
                ulong page = mirror.Start + (ulong)random.Next(Pages) * MirroredSpace.Page + (ulong)random.Next(4096);
                string? difference = mirror.Touch(page, write: random.Next(2) == 0, (byte)random.Next(1, 256));
                if (difference is not null)
                {
                    return difference;
                }
            }
            return null;
        }
        return result.Host == result.Ours ? null : $"errno differs: host {result.Host}, ours {result.Ours}";
    }

    // mremap of a range below the heap: every flag combination, the valid ones most often, now and then an unaligned
    // address or length, a zero old length, or a destination overlapping the source. Whatever it can map stays below
    // the page under the heap: a growth in place, a MREMAP_FIXED destination, a MREMAP_DONTUNMAP hint.
    private static string? Remap(MirroredSpace mirror, Random random, int first, int count)
    {
        int below = HeapPage - 1;
        ulong address = mirror.Start + (ulong)first * MirroredSpace.Page;
        int flags = random.Next(10) switch
        {
            0 or 1 => 0,
            2 or 3 => Linux.MREMAP_MAYMOVE,
            4 or 5 => Linux.MREMAP_MAYMOVE | Linux.MREMAP_FIXED,
            6 => Linux.MREMAP_MAYMOVE | Linux.MREMAP_DONTUNMAP,
            7 => Linux.MREMAP_MAYMOVE | Linux.MREMAP_FIXED | Linux.MREMAP_DONTUNMAP,
            _ => random.Next(16),
        };
        int oldPages = random.Next(8) == 0 ? 0 : count;
        int newPages = flags is (Linux.MREMAP_MAYMOVE | Linux.MREMAP_DONTUNMAP) or (Linux.MREMAP_MAYMOVE | Linux.MREMAP_FIXED | Linux.MREMAP_DONTUNMAP) && random.Next(4) != 0
            ? oldPages
            : 1 + random.Next(Math.Min(24, below - first));
        newPages = Math.Min(newPages, below - first);
        ulong oldLength = (ulong)oldPages * MirroredSpace.Page;
        ulong newLength = (ulong)Math.Max(newPages, 1) * MirroredSpace.Page;
        int targetPages = Math.Max(newPages, 1);
        int targetFirst = random.Next(below - targetPages + 1);
        ulong newAddress = mirror.Start + (ulong)targetFirst * MirroredSpace.Page;
        switch (random.Next(12))
        {
            case 0:
                address += (ulong)random.Next(1, 4096);
                break;
            case 1:
                newLength -= (ulong)random.Next(1, 4096);
                break;
            case 2:
                newAddress += (ulong)random.Next(1, 4096);
                break;
            case 3:
                newLength = 0;
                break;
        }
        return mirror.Remap(address, oldLength, newLength, flags, newAddress);
    }

    private static void Check(MirroredSpace mirror, int seed, int step, string? difference)
    {
        if (difference is not null)
        {
            Assert.Fail($"seed {seed} (replay with FAULTLINE_CONFORMANCE_SEED={seed}), step {step}: {difference}\nhistory:\n{mirror.History}");
        }
    }
}
