using Faultline.Host;
using BenchmarkDotNet.Attributes;

namespace Faultline.Benchmarks;

/// <summary>
/// Cost growth against the mapped size (1 MiB → 64 GiB, sparse: one resident page per 2 MiB, so the page tables
/// span the whole range while the resident set stays small): an untouched 64 KiB map + unmap placed by the search, a
/// one-page protect inside the large mapping that splits and re-merges it, a map + first-touch fault + unmap, and a
/// zap + re-fault of one resident page of the large mapping (<c>MADV_DONTNEED</c>, then a store). None of these
/// touches more than a few page-table pages, so in Linux (radix page tables, a maple tree of VMAs) their cost does
/// not depend on how much is mapped; nor may Faultline's.
/// </summary>
[MemoryDiagnoser]
public unsafe class MappedSizeScalingBenchmarks
{
    private const ulong Page = 4096;
    private const ulong Small = 64 * 1024;
    private const ulong Stride = 2UL << 20;

    private AddressSpace? _space;
    private Cpu? _cpu;
    private Cpu? _idle;
    private ulong _large;
    private ulong _length;

    /// <summary>Faultline (per-VMA locks) or the kernel.</summary>
    [Params(BenchPath.VmaLock, BenchPath.Kernel)]
    public BenchPath Path { get; set; }

    /// <summary>The large mapping's size in MiB.</summary>
    [Params(1, 1024, 65536)]
    public int MappedMiB { get; set; }

    /// <summary>Maps the large region and makes one page per 2 MiB resident.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _length = (ulong)MappedMiB << 20;
        if (Path == BenchPath.Kernel)
        {
            // MAP_NORESERVE: 64 GiB exceeds this machine's memory; the heuristic overcommit would refuse it otherwise.
            _large = (ulong)LibC.Mmap(0, (nuint)_length, Linux.PROT_READ | Linux.PROT_WRITE,
                Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_NORESERVE, -1, 0);
            for (ulong p = 0; p < _length; p += Math.Min(Stride, _length / 2))
            {
                *(long*)(_large + p) = 1;
            }
            return;
        }
        (_space, _cpu, _idle) = Spaces.Create(Path, 512L << 20);
        _large = _space.Map(0, _length, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        for (ulong p = 0; p < _length; p += Math.Min(Stride, _length / 2))
        {
            _cpu.Store(_large + p, 1L);
        }
    }

    /// <summary>mmap (placed by the unmapped-area search) + munmap of 64 KiB, untouched.</summary>
    [Benchmark]
    public void MapUnmap() => Spaces.MapUnmapUntouched(_space, Small);

    /// <summary>mprotect of one resident page in the middle of the large mapping to read-only and back (split, merge).</summary>
    [Benchmark]
    public void ProtectSplitMerge()
    {
        ulong page = _large + _length / 2;
        Spaces.ProtectSplitMerge(_space, page);
    }

    /// <summary>mmap of one page, a first-touch write fault on it, munmap.</summary>
    [Benchmark]
    public void MapTouchUnmap() => Spaces.MapTouchUnmap(_space, _cpu);

    /// <summary>madvise(MADV_DONTNEED) of one resident page near the end of the large mapping, then a store faulting it back.</summary>
    [Benchmark]
    public void ZapAndRefault()
    {
        ulong page = _large + _length - Math.Min(Stride, _length / 2);
        if (_space is { } space)
        {
            space.Advise(page, Page, Advice.DontNeed);
            _cpu!.Store(page, 2L);
        }
        else
        {
            LibC.Madvise((nint)page, (nuint)Page, Linux.MADV_DONTNEED);
            *(long*)page = 2;
        }
    }

    /// <summary>Releases the memory.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        if (Path == BenchPath.Kernel && _large != 0)
        {
            LibC.Munmap((nint)_large, (nuint)_length);
        }
        _idle?.Dispose();
        _cpu?.Dispose();
        _space?.Dispose();
    }
}
