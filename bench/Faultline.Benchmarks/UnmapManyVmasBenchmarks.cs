using Faultline.Host;
using BenchmarkDotNet.Attributes;

namespace Faultline.Benchmarks;

/// <summary>
/// <c>munmap</c> of one range that holds <see cref="Vmas"/> single-page VMAs of alternating protection (so none
/// merge), built in the iteration setup: the cost of detaching many VMAs at once, which grew quadratically while the
/// unmap re-scanned its write sections per VMA. The kernel row builds the same layout with mprotect on one mapping.
/// </summary>
[MemoryDiagnoser]
[InvocationCount(1, 1)]
public class UnmapManyVmasBenchmarks
{
    private const ulong Page = 4096;

    private AddressSpace? _space;
    private Cpu? _cpu;
    private Cpu? _idle;
    private ulong _region;

    /// <summary>The path.</summary>
    [Params(BenchPath.MmapLock, BenchPath.Kernel)]
    public BenchPath Path { get; set; }

    /// <summary>VMAs in the unmapped range (below the default <c>vm.max_map_count</c> of 65,530).</summary>
    [Params(1024, 16384)]
    public int Vmas { get; set; }

    /// <summary>Creates the address space.</summary>
    [GlobalSetup]
    public void GlobalSetup()
    {
        if (Path != BenchPath.Kernel)
        {
            (_space, _cpu, _idle) = Spaces.Create(Path, 64L << 20);
        }
    }

    /// <summary>Maps the range and splits it into <see cref="Vmas"/> VMAs (not measured).</summary>
    [IterationSetup]
    public void MapSplit()
    {
        ulong length = (ulong)Vmas * Page;
        if (_space is { } space)
        {
            _region = space.Map(0, length, Protection.ReadWrite, MapFlags.PrivateAnonymous);
            for (int i = 0; i < Vmas; i += 2)
            {
                space.Protect(_region + (ulong)i * Page, Page, Protection.Read);
            }
        }
        else
        {
            _region = (ulong)LibC.MapAnonymousSmallPages(length);
            for (int i = 0; i < Vmas; i += 2)
            {
                LibC.Mprotect((nint)(_region + (ulong)i * Page), (nuint)Page, Linux.PROT_READ);
            }
        }
    }

    /// <summary>One munmap of the whole range.</summary>
    [Benchmark]
    public void UnmapAll()
    {
        ulong length = (ulong)Vmas * Page;
        if (_space is { } space)
        {
            space.Unmap(_region, length);
        }
        else
        {
            LibC.Munmap((nint)_region, (nuint)length);
        }
    }

    /// <summary>Releases the address space.</summary>
    [GlobalCleanup]
    public void GlobalCleanup()
    {
        _idle?.Dispose();
        _cpu?.Dispose();
        _space?.Dispose();
    }
}
