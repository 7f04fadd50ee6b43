using Faultline.Host;
using BenchmarkDotNet.Attributes;

namespace Faultline.Benchmarks;

/// <summary>
/// First-touch write fault latency: every invocation writes one fresh page of a region mapped in the iteration setup
/// (outside the measurement), so each measured operation is exactly one anonymous page fault: the fault path, a
/// zeroed frame, the PTE, the TLB fill. The floor is <see cref="FloorBenchmarks.Zero4KiB"/>.
/// </summary>
[MemoryDiagnoser]
[InvocationCount(Pages, 1)]
public unsafe class FirstTouchBenchmarks
{
    private const int Pages = 8192;
    private const ulong Length = Pages * 4096UL;

    private AddressSpace? _space;
    private Cpu? _cpu;
    private Cpu? _idle;
    private ulong _region;
    private ulong _next;

    /// <summary>The path.</summary>
    [Params(BenchPath.MmapLock, BenchPath.Speculative, BenchPath.VmaLock, BenchPath.Kernel)]
    public BenchPath Path { get; set; }

    /// <summary>Creates the address space.</summary>
    [GlobalSetup]
    public void GlobalSetup()
    {
        if (Path != BenchPath.Kernel)
        {
            (_space, _cpu, _idle) = Spaces.Create(Path, 2 * (long)Length + (64L << 20));
        }
    }

    /// <summary>Maps a fresh region (not measured).</summary>
    [IterationSetup]
    public void MapFresh()
    {
        _region = Path == BenchPath.Kernel
            ? (ulong)LibC.MapAnonymousSmallPages(Length)
            : _space!.Map(0, Length, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        _next = _region;
    }

    /// <summary>Unmaps it (not measured).</summary>
    [IterationCleanup]
    public void UnmapRegion()
    {
        if (Path == BenchPath.Kernel)
        {
            LibC.Munmap((nint)_region, (nuint)Length);
        }
        else
        {
            _space!.Unmap(_region, Length);
        }
    }

    /// <summary>One first-touch write fault.</summary>
    [Benchmark]
    public void FirstTouchWrite()
    {
        ulong at = _next;
        _next = at + 4096;
        if (_cpu is { } cpu)
        {
            cpu.Store(at, 1L);
        }
        else
        {
            *(long*)at = 1;
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
