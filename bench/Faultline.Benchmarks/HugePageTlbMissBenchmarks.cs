using Faultline.Host;
using BenchmarkDotNet.Attributes;

namespace Faultline.Benchmarks;

/// <summary>
/// TLB-miss cost of <c>Load&lt;long&gt;</c> over 1 GiB (or 8 MiB) of resident memory, one load per 4 KiB page in a
/// fixed pseudo-random page order, so every load misses the 1,024-entry software TLB (direct-mapped: a page comes back
/// to its slot only after the other pages of that slot) and, over 1 GiB, the hardware TLB and the data caches. Faultline with 4 KiB pages, with 2 MiB
/// pages filled 4 KiB at a time by a walk, and with 2 MiB pages and the per-Cpu 2 MiB cache; the floors are raw loads
/// of the same pattern over 1 GiB of host 4 KiB pages (independent loads, whose misses overlap, and a pointer chase,
/// whose misses do not) and over 32 KiB. Setup checks the region's <c>AnonHugePages</c>
/// and prints the walks and 2 MiB-cache fills per load of one pass.
/// </summary>
[MemoryDiagnoser]
public unsafe class HugePageTlbMissBenchmarks
{
    private const int LoadsPerInvoke = (1 << 30) / 4096;
    private const ulong CachedWindow = 32 << 10;

    private AddressSpace? _space;
    private Cpu? _cpu;
    private Cpu? _idle;
    private ulong _region;
    private ulong[] _offsets = [];

    /// <summary>
    /// The region in MiB: 1,024 (the data misses the caches too, on the host as in the guest) or 8 (the data stays in
    /// the caches and the translation is most of a miss). Each invocation makes 262,144 loads: 1 or 128 passes.
    /// </summary>
    [Params(1024, 8)]
    public int RegionMiB { get; set; }

    private ulong Length => (ulong)RegionMiB << 20;

    private int Pages => (int)(Length / 4096);

    /// <summary>Which memory and translation path.</summary>
    [Params(HugePageTlbMissLayout.SmallPages, HugePageTlbMissLayout.HugePages, HugePageTlbMissLayout.HugePagesCached, HugePageTlbMissLayout.Host,
        HugePageTlbMissLayout.HostCached, HugePageTlbMissLayout.HostChase)]
    public HugePageTlbMissLayout Layout { get; set; }

    /// <summary>Maps and populates the region and builds the page order.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _offsets = PageOrder(Pages, Layout == HugePageTlbMissLayout.HostCached ? CachedWindow - 1 : ulong.MaxValue);
        if (Layout is HugePageTlbMissLayout.Host or HugePageTlbMissLayout.HostCached or HugePageTlbMissLayout.HostChase)
        {
            _region = (ulong)LibC.MapAnonymousSmallPages(Length);
            for (int i = 0; i < Pages; i++)
            {
                // Each load's target holds the next one's offset (used by the chase; any value does for the others).
                *(ulong*)(_region + _offsets[i]) = _offsets[(i + 1) % Pages];
            }
            return;
        }
        bool huge = Layout != HugePageTlbMissLayout.SmallPages;
        _space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = FaultPath.VmaLock,
            PhysicalMemoryBytes = (long)Length + (64L << 20),
            HugeTlbEntries = Layout == HugePageTlbMissLayout.HugePagesCached ? 512 : 0,
        });
        (_cpu, _idle) = (_space.AttachCpu(), _space.AttachCpu());
        // A length that is a multiple of 2 MiB is placed 2 MiB-aligned (FaultlineOptions.ThpAlignedPlacement).
        _region = _space.Map(0, Length, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        _space.Advise(_region, Length, huge ? Advice.HugePage : Advice.NoHugePage);
        for (ulong p = 0; p < Length; p += 4096)
        {
            _cpu.Store(_region + p, (long)p);
        }
        long hugeKb = SmapsField(_space.GetSmaps(), "AnonHugePages");
        if (hugeKb != (huge ? (long)(Length >> 10) : 0))
        {
            throw new InvalidOperationException($"AnonHugePages is {hugeKb} kB");
        }
        LoadMiss();
        IReadOnlyDictionary<string, long> before = _space.GetCounters();
        LoadMiss();
        IReadOnlyDictionary<string, long> after = _space.GetCounters();
        double walks = (after[VmCounters.TlbFill] - before[VmCounters.TlbFill]) / (double)LoadsPerInvoke;
        double cached = (after[VmCounters.TlbHugeFill] - before[VmCounters.TlbHugeFill]) / (double)LoadsPerInvoke;
        Console.WriteLine($"// {Layout} {RegionMiB} MiB: AnonHugePages {hugeKb} kB; per load: {walks:F4} walks, {cached:F4} 2 MiB-cache fills");
    }

    /// <summary>One load per page of the region, in the page order, as many passes as make 262,144 loads.</summary>
    [Benchmark(OperationsPerInvoke = LoadsPerInvoke)]
    public long LoadMiss()
    {
        long sum = 0;
        ulong a = _region;
        ulong[] offsets = _offsets;
        int passes = LoadsPerInvoke / offsets.Length;
        if (_cpu is { } cpu)
        {
            for (int pass = 0; pass < passes; pass++)
            {
                for (int i = 0; i < offsets.Length; i++)
                {
                    sum += cpu.Load<long>(a + offsets[i]);
                }
            }
        }
        else if (Layout == HugePageTlbMissLayout.HostChase)
        {
            ulong next = offsets[0];
            for (int i = 0; i < LoadsPerInvoke; i++)
            {
                next = *(ulong*)(a + next);
            }
            sum = (long)next;
        }
        else
        {
            for (int pass = 0; pass < passes; pass++)
            {
                for (int i = 0; i < offsets.Length; i++)
                {
                    sum += *(long*)(a + offsets[i]);
                }
            }
        }
        return sum;
    }

    /// <summary>Releases the memory.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        if (_space is null)
        {
            LibC.Munmap((nint)_region, (nuint)Length);
        }
        _idle?.Dispose();
        _cpu?.Dispose();
        _space?.Dispose();
    }

    // Every page once in a fixed shuffled order (Fisher-Yates, seed 1), each at a different cache line of its page so
    // the loads do not all fall in the same cache sets; `mask` folds the offsets into a small window for the cached row.
    private static ulong[] PageOrder(int pages, ulong mask)
    {
        var random = new Random(1);
        var offsets = new ulong[pages];
        for (int i = 0; i < pages; i++)
        {
            offsets[i] = ((ulong)i << 12) | (((ulong)i & 63) << 6);
        }
        for (int i = pages - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (offsets[i], offsets[j]) = (offsets[j], offsets[i]);
        }
        for (int i = 0; i < pages; i++)
        {
            offsets[i] &= mask;
        }
        return offsets;
    }

    private static long SmapsField(string smaps, string field) =>
        smaps.Split('\n').Where(l => l.StartsWith(field + ":", StringComparison.Ordinal))
            .Sum(l => long.Parse(l[(field.Length + 1)..].Trim()[..^3]));
}
