using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;

namespace Faultline.Benchmarks;

/// <summary>
/// Host memory against guest RAM, and pinning. The hit rows are <see cref="TlbBenchmarks"/>' pattern (64 loads within
/// one page, the software TLB hits) on a page of each kind: after the TLB fill both read a cached host address, so
/// they should be equal. The miss rows walk 4096 pages (more than the 1024-entry TLB): the host row's fill turns a
/// window frame into its host address instead of an arena frame. The pin rows pin and unpin resident private pages
/// (<see cref="AddressSpace.Pin"/> then <see cref="PinnedPages.Dispose"/>), one page or 64 at a time, per page.
/// </summary>
[MemoryDiagnoser]
public unsafe class HostMemoryBenchmarks
{
    private const int HitLoads = 64;
    private const int MissPages = 4096;
    private const ulong Length = MissPages * 4096UL;
    private const int PinBatch = 64;

    private AddressSpace? _space;
    private Cpu? _cpu;
    private Cpu? _idle;
    private byte* _host;
    private ulong _region;
    private ulong _ram;

    /// <summary>What the loads read: guest RAM (private anonymous) or host memory (<see cref="AddressSpace.MapHostMemory"/>).</summary>
    [Params("guest-ram", "host-memory")]
    public string Memory { get; set; } = "guest-ram";

    /// <summary>Maps and populates 16 MiB of the chosen kind, and 16 MiB of guest RAM for the pin rows.</summary>
    [GlobalSetup]
    public void Setup()
    {
        (_space, _cpu, _idle) = Spaces.Create(BenchPath.VmaLock, (long)Length * 2 + (64L << 20));
        if (Memory == "host-memory")
        {
            _host = (byte*)NativeMemory.AlignedAlloc((nuint)Length, 4096);
            new Span<byte>(_host, (int)Length).Clear();
            _region = _space.MapHostMemory(0, Length, Protection.ReadWrite, MapFlags.Shared, (nint)_host);
        }
        else
        {
            _region = _space.Map(0, Length, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        }
        _ram = _space.Map(0, Length, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        for (ulong p = 0; p < Length; p += 4096)
        {
            _cpu.Store(_region + p, (long)p);
            _cpu.Store(_ram + p, (long)p);
        }
    }

    /// <summary>A load that hits the TLB.</summary>
    [Benchmark(OperationsPerInvoke = HitLoads)]
    public long LoadTlbHit()
    {
        long sum = 0;
        Cpu cpu = _cpu!;
        ulong a = _region;
        for (int i = 0; i < HitLoads; i++)
        {
            sum += cpu.Load<long>(a + (ulong)(i * 8));
        }
        return sum;
    }

    /// <summary>A load that misses the TLB (lockless walk and refill, no fault).</summary>
    [Benchmark(OperationsPerInvoke = MissPages)]
    public long LoadTlbMiss()
    {
        long sum = 0;
        Cpu cpu = _cpu!;
        ulong a = _region;
        for (ulong p = 0; p < Length; p += 4096)
        {
            sum += cpu.Load<long>(a + p);
        }
        return sum;
    }

    /// <summary>Pin (for writing) and unpin one resident page of guest RAM.</summary>
    [Benchmark]
    public int PinUnpinOnePage()
    {
        using PinnedPages pinned = _space!.Pin(_ram, 4096, write: true);
        return pinned.PageCount;
    }

    /// <summary>Pin (for writing) and unpin 64 resident pages of guest RAM in one call, per page.</summary>
    [Benchmark(OperationsPerInvoke = PinBatch)]
    public int PinUnpinPerPageOf64()
    {
        using PinnedPages pinned = _space!.Pin(_ram, PinBatch * 4096, write: true);
        return pinned.PageCount;
    }

    /// <summary>Releases the memory (the mappings go before the host buffer).</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _idle?.Dispose();
        _cpu?.Dispose();
        _space?.Dispose();
        if (_host != null)
        {
            NativeMemory.AlignedFree(_host);
        }
    }
}
