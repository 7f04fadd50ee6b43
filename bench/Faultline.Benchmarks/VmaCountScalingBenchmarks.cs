using Faultline.Host;
using BenchmarkDotNet.Attributes;

namespace Faultline.Benchmarks;

/// <summary>
/// Cost growth against the number of VMAs in the address space (1 → 60,000, below the default
/// <c>vm.max_map_count</c>): an untouched 64 KiB map + unmap placed by the kernel's search, a one-page protect that
/// splits and re-merges a VMA, and a map + first-touch fault + unmap. Linux's costs grow logarithmically (maple tree);
/// so must Faultline's. The VMAs are made by protecting every other page of one mapping read-only; the kernel rows
/// stop at 16,384 VMAs, since the benchmark process's own mappings count against the same limit.
/// </summary>
[MemoryDiagnoser]
public unsafe class VmaCountScalingBenchmarks
{
    private const ulong Page = 4096;
    private const ulong Small = 64 * 1024;

    private AddressSpace? _space;
    private Cpu? _cpu;
    private Cpu? _idle;
    private ulong _crowd;
    private ulong _large;

    /// <summary>Faultline (per-VMA locks) or the kernel.</summary>
    [Params(BenchPath.VmaLock, BenchPath.Kernel)]
    public BenchPath Path { get; set; }

    /// <summary>VMAs besides the ones an operation creates.</summary>
    [Params(1, 1024, 16384, 60000)]
    public int Vmas { get; set; }

    /// <summary>Builds the crowd of VMAs and one populated 4 MiB VMA to protect inside.</summary>
    [GlobalSetup]
    public void Setup()
    {
        if (Path == BenchPath.Kernel && Vmas > 16384)
        {
            throw new NotSupportedException("the benchmark process's own mappings leave no room for this many VMAs");
        }
        ulong crowdLength = (ulong)Vmas * Page;
        if (Path == BenchPath.Kernel)
        {
            _crowd = (ulong)LibC.MapAnonymousSmallPages(crowdLength);
            for (int i = 1; i < Vmas; i += 2)
            {
                LibC.Mprotect((nint)(_crowd + (ulong)i * Page), (nuint)Page, Linux.PROT_READ);
            }
            _large = (ulong)LibC.MapAnonymousSmallPages(4 << 20);
            for (ulong p = 0; p < 4 << 20; p += Page)
            {
                *(long*)(_large + p) = 1;
            }
            return;
        }
        (_space, _cpu, _idle) = Spaces.Create(Path, 64L << 20);
        _crowd = _space.Map(0, crowdLength, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        for (int i = 1; i < Vmas; i += 2)
        {
            _space.Protect(_crowd + (ulong)i * Page, Page, Protection.Read);
        }
        _large = _space.Map(0, 4 << 20, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        for (ulong p = 0; p < 4 << 20; p += Page)
        {
            _cpu.Store(_large + p, 1L);
        }
    }

    /// <summary>mmap (placed by the unmapped-area search) + munmap of 64 KiB, untouched.</summary>
    [Benchmark]
    public void MapUnmap() => Spaces.MapUnmapUntouched(_space, Small);

    /// <summary>mprotect of one resident page to read-only and back (split, then merge).</summary>
    [Benchmark]
    public void ProtectSplitMerge()
    {
        ulong page = _large + (2 << 20);
        Spaces.ProtectSplitMerge(_space, page);
    }

    /// <summary>mmap of one page, a first-touch write fault on it, munmap.</summary>
    [Benchmark]
    public void MapTouchUnmap() => Spaces.MapTouchUnmap(_space, _cpu);

    /// <summary>Releases the memory.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        if (Path == BenchPath.Kernel && _crowd != 0)
        {
            LibC.Munmap((nint)_crowd, (nuint)((ulong)Vmas * Page));
            LibC.Munmap((nint)_large, 4 << 20);
        }
        _idle?.Dispose();
        _cpu?.Dispose();
        _space?.Dispose();
    }
}
