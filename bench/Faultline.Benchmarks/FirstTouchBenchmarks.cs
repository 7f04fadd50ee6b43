using Faultline.Host;
using BenchmarkDotNet.Attributes;

namespace Faultline.Benchmarks;

/// <summary>
/// First-touch write fault latency: every invocation writes one fresh page of a region mapped in the iteration setup
/// (outside the measurement), so each measured operation is exactly one anonymous page fault: the fault path, a
/// zeroed frame, the PTE, the TLB fill. The floor is <see cref="FloorBenchmarks.Zero4KiB"/>.
/// </summary>
/// <remarks>
/// The global setup first runs the measured pattern for <see cref="TierWarmUp"/>: with <c>[IterationSetup]</c>
/// BenchmarkDotNet runs two warm-up and six measured iterations of a few milliseconds each and no pilot, so on a quiet
/// machine the whole measurement ended before tiered compilation had promoted the fault path (it starts counting calls
/// 100 ms after the last tier-0 compilation, then goes through an instrumented tier), and part of it ran tier-0 code.
/// </remarks>
[MemoryDiagnoser]
[InvocationCount(Pages, 1)]
public unsafe class FirstTouchBenchmarks
{
    private const int Pages = 8192;
    private const ulong Length = Pages * 4096UL;

    /// <summary>How long the global setup runs the measured pattern: ten times tiered compilation's call-counting delay.</summary>
    private static readonly TimeSpan TierWarmUp = TimeSpan.FromSeconds(1);

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
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < TierWarmUp)
        {
            MapFresh();
            for (int i = 0; i < Pages; i++)
            {
                FirstTouchWrite();
            }
            UnmapRegion();
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
