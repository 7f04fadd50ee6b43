using System.Diagnostics;
using System.Runtime.CompilerServices;
using Faultline.Host;

namespace Faultline.Cli.Running;

/// <summary>
/// Measures the floors the fault figures are read against, on this machine and in the same run: zeroing a 4 KiB page
/// that is not in any cache and one that is, zeroing a cold 2 MiB block (what a huge-page fault clears), copying a 4 KiB page to another when neither is in any cache (what a
/// copy-on-write fault over a large region copies) and when both are, a cached 8-byte load, and a load whose page
/// misses the hardware TLB (random 4 KiB pages of a 1 GiB host region, read-populated: where the host maps the zero
/// page every page shares one cached frame and only the translation misses; where it does not, the load also misses
/// the data caches, and the floor's name says so). Owns its host memory; dispose it.
/// </summary>
internal sealed unsafe class FloorProbe : IDisposable
{

    private const int PageSize = 4096;
    private const int HugePageSize = 2 << 20;
    private const int MadvisePopulateRead = 22;
    /// <summary>
    /// The cold-zeroing region: far larger than any last-level cache, so a page zeroed once is evicted before the
    /// random order returns to it.
    /// </summary>
    public const long DefaultColdRegionBytes = 256L << 20;

    /// <summary>The TLB-miss region: 262,144 pages, far more than any hardware TLB holds or its second level reaches.</summary>
    public const long DefaultTlbRegionBytes = 1L << 30;
    private static readonly TimeSpan MeasureFor = TimeSpan.FromMilliseconds(25);

    private readonly long _coldRegionBytes;
    private readonly long _tlbRegionBytes;
    private readonly nint _coldRegion;
    private readonly nint _tlbRegion;
    private readonly nint _warmPages;
    private readonly int[] _coldOrder;
    private readonly int[] _tlbOrder;
    private readonly int[] _hugeOrder;
    // Every load is summed into this field, so the JIT cannot drop the loads being timed.
    private long _sink;

    /// <summary>Maps and populates the regions (the 1 GiB one by reading it: the zero page where the host has it).</summary>
    /// <param name="random">Shuffles the page orders.</param>
    /// <param name="readFaultMapsZeroPage">The probed host fact that decides what the TLB-miss load also misses.</param>
    /// <param name="coldRegionBytes">Size of the cold-zeroing region; smaller than the last-level cache measures a warm one.</param>
    /// <param name="tlbRegionBytes">Size of the TLB-miss region; smaller than the TLB's reach measures hits.</param>
    public FloorProbe(Random random, bool readFaultMapsZeroPage, long coldRegionBytes = DefaultColdRegionBytes,
        long tlbRegionBytes = DefaultTlbRegionBytes)
    {
        _coldRegionBytes = coldRegionBytes;
        _tlbRegionBytes = tlbRegionBytes;
        Names = ["zero 4 KiB, cold", "zero 4 KiB, cached", "copy 4 KiB, cold", "copy 4 KiB, cached", "load, cached",
            readFaultMapsZeroPage ? "load, TLB miss (zero page)" : "load, TLB and cache miss (private pages)",
            "zero 2 MiB, cold"];
        _coldRegion = LibC.MapAnonymousSmallPages((ulong)_coldRegionBytes);
        new Span<byte>((void*)_coldRegion, (int)_coldRegionBytes).Fill(1);
        _tlbRegion = LibC.MapAnonymousSmallPages((ulong)_tlbRegionBytes, writable: false);
        if (LibC.MadviseErrno((ulong)_tlbRegion, (ulong)_tlbRegionBytes, MadvisePopulateRead) != 0)
        {
            // A kernel without MADV_POPULATE_READ: read one byte per page instead.
            for (long offset = 0; offset < _tlbRegionBytes; offset += PageSize)
            {
                _sink += Volatile.Read(ref *(byte*)(_tlbRegion + (nint)offset));
            }
        }
        _warmPages = LibC.MapAnonymousSmallPages(2 * PageSize);
        _coldOrder = RandomPages(_coldRegionBytes, random);
        _tlbOrder = RandomPages(_tlbRegionBytes, random);
        _hugeOrder = Enumerable.Range(0, (int)(_coldRegionBytes / HugePageSize)).ToArray();
        random.Shuffle(_hugeOrder);
    }

    /// <summary>Floor names, in report order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>Measures every floor once.</summary>
    /// <param name="repeat">The repeat index recorded with each figure.</param>
    public IReadOnlyList<FloorResult> Measure(int repeat) =>
    [
        new(Names[0], repeat, NsPerOp(ZeroCold)),
        new(Names[1], repeat, NsPerOp(ZeroCached)),
        new(Names[2], repeat, NsPerOp(CopyCold)),
        new(Names[3], repeat, NsPerOp(CopyCached)),
        new(Names[4], repeat, NsPerOp(LoadCached)),
        new(Names[5], repeat, NsPerOp(LoadTlbMiss)),
        new(Names[6], repeat, NsPerOp(ZeroHugeCold)),
    ];

    /// <inheritdoc/>
    public void Dispose()
    {
        _ = LibC.MunmapErrno((ulong)_coldRegion, (ulong)_coldRegionBytes);
        _ = LibC.MunmapErrno((ulong)_tlbRegion, (ulong)_tlbRegionBytes);
        _ = LibC.MunmapErrno((ulong)_warmPages, 2 * PageSize);
    }

    private static int[] RandomPages(long regionBytes, Random random)
    {
        int[] pages = Enumerable.Range(0, (int)(regionBytes / PageSize)).ToArray();
        random.Shuffle(pages);
        return pages;
    }

    // Runs batches until MeasureFor has passed; each batch returns how many operations it did. The figure is the
    // thread's CPU time per operation, like ns/fault, so time descheduled on a busy machine does not count.
    private static double NsPerOp(Func<long> batch)
    {
        long ops = 0;
        double cpuBefore = LibC.Usage(LibC.RUSAGE_THREAD).CpuSeconds;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < MeasureFor)
        {
            ops += batch();
        }
        return (LibC.Usage(LibC.RUSAGE_THREAD).CpuSeconds - cpuBefore) * 1e9 / ops;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private long ZeroCold()
    {
        foreach (int page in _coldOrder)
        {
            new Span<byte>((void*)(_coldRegion + ((nint)page * PageSize)), PageSize).Clear();
        }
        return _coldOrder.Length;
    }

    // 2 MiB blocks of the cold region in a random order; a region smaller than one block measures nothing.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private long ZeroHugeCold()
    {
        foreach (int block in _hugeOrder)
        {
            new Span<byte>((void*)(_coldRegion + ((nint)block * HugePageSize)), HugePageSize).Clear();
        }
        return Math.Max(_hugeOrder.Length, 1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private long ZeroCached()
    {
        const int count = 4096;
        var page = new Span<byte>((void*)_warmPages, PageSize);
        for (int i = 0; i < count; i++)
        {
            page.Clear();
        }
        return count;
    }

    // Page i of the random order onto the page half the order away: both far apart in the order, so both cold.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private long CopyCold()
    {
        int count = _coldOrder.Length;
        for (int i = 0; i < count; i++)
        {
            nint from = _coldRegion + ((nint)_coldOrder[i] * PageSize);
            nint to = _coldRegion + ((nint)_coldOrder[(i + count / 2) % count] * PageSize);
            Buffer.MemoryCopy((void*)from, (void*)to, PageSize, PageSize);
        }
        return count;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private long CopyCached()
    {
        const int count = 4096;
        for (int i = 0; i < count; i++)
        {
            Buffer.MemoryCopy((void*)_warmPages, (void*)(_warmPages + PageSize), PageSize, PageSize);
        }
        return count;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private long LoadCached()
    {
        const int count = 1 << 20;
        long* words = (long*)_warmPages;
        long sum = 0;
        for (int i = 0; i < count; i++)
        {
            sum += words[i & (PageSize / sizeof(long) - 1)];
        }
        _sink += sum;
        return count;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private long LoadTlbMiss()
    {
        byte* region = (byte*)_tlbRegion;
        long sum = 0;
        foreach (int page in _tlbOrder)
        {
            sum += *(long*)(region + ((nint)page * PageSize));
        }
        _sink += sum;
        return _tlbOrder.Length;
    }
}
