using Faultline.Host;
using BenchmarkDotNet.Attributes;

namespace Faultline.Benchmarks;

/// <summary>
/// <c>Load&lt;long&gt;</c> on resident memory. Hit: 64 loads within one page (the software TLB hits). Miss: one load per
/// page across 64 MiB, more pages than the 1024-entry software TLB holds, so every load walks the page table and
/// refills (no fault). The kernel rows are raw pointer loads of the same pattern (the hit row is the raw-load floor;
/// the miss row pays the hardware TLB misses). The scoped hit rows open one read scope per 64 loads, or one per 4,096
/// loads with a quiescent point per 64, as an emulator's vCPU loop would per block of guest instructions: that row is
/// the one set against Unicorn 2's TLB hit. The loops are <see cref="DataPathLoops"/>'s, which
/// <c>--cpu-time</c> (<see cref="DataPathCpuTime"/>) also times.
/// </summary>
[MemoryDiagnoser]
public unsafe class TlbBenchmarks
{
    private const ulong Length = DataPathLoops.MissLength;

    private AddressSpace? _space;
    private Cpu? _cpu;
    private Cpu? _idle;
    private ulong _region;

    /// <summary>Faultline (the data plane is the same on every fault path) or the kernel.</summary>
    [Params(BenchPath.VmaLock, BenchPath.Kernel)]
    public BenchPath Path { get; set; }

    /// <summary>Maps and populates 64 MiB.</summary>
    [GlobalSetup]
    public void Setup()
    {
        if (Path == BenchPath.Kernel)
        {
            _region = (ulong)LibC.MapAnonymousSmallPages(Length);
            for (ulong p = 0; p < Length; p += 4096)
            {
                *(long*)(_region + p) = (long)p;
            }
            return;
        }
        (_space, _cpu, _idle) = Spaces.Create(Path, (long)Length + (64L << 20));
        _region = _space.Map(0, Length, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        for (ulong p = 0; p < Length; p += 4096)
        {
            _cpu.Store(_region + p, (long)p);
        }
    }

    /// <summary>A load that hits the TLB.</summary>
    [Benchmark(OperationsPerInvoke = DataPathLoops.HitLoads)]
    public long LoadTlbHit() =>
        _cpu is { } cpu ? DataPathLoops.PlainHit(cpu, _region) : DataPathLoops.RawHit(_region);

    /// <summary>
    /// A load that hits the TLB inside a read scope (<see cref="Cpu.EnterScope"/>), one scope per 64 loads: the section
    /// is held across the batch, so the hit stores nothing. The kernel row is the raw load again.
    /// </summary>
    [Benchmark(OperationsPerInvoke = DataPathLoops.HitLoads)]
    public long LoadTlbHitInScope() =>
        _cpu is { } cpu ? DataPathLoops.ScopePerLoop(cpu, _region) : DataPathLoops.RawHit(_region);

    /// <summary>
    /// The Unicorn-like row: ns per guest load that hits the TLB inside one long read scope with a quiescent point per
    /// 64 loads, as a vCPU loop passes one per block of guest instructions (<see cref="CpuScope.QuiescentPoint"/>).
    /// The kernel row is the raw load.
    /// </summary>
    [Benchmark(OperationsPerInvoke = DataPathLoops.HitLoads * DataPathLoops.QuiescentBlocks)]
    public long LoadTlbHitInScopeQuiescent()
    {
        if (_cpu is { } cpu)
        {
            using CpuScope scope = cpu.EnterScope();
            return DataPathLoops.ScopedHitQuiescent(scope, _region);
        }
        return DataPathLoops.RawHitBlocks(_region);
    }

    /// <summary>A load that misses the TLB (walk and refill): <c>Load&lt;ulong&gt;</c>, see <see cref="DataPathLoops.PlainMiss"/>.</summary>
    [Benchmark(OperationsPerInvoke = DataPathLoops.MissPages)]
    public long LoadTlbMiss() =>
        _cpu is { } cpu ? DataPathLoops.PlainMiss(cpu, _region) : DataPathLoops.RawMiss(_region);

    /// <summary>Releases the memory.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        if (Path == BenchPath.Kernel)
        {
            LibC.Munmap((nint)_region, (nuint)Length);
        }
        _idle?.Dispose();
        _cpu?.Dispose();
        _space?.Dispose();
    }
}
