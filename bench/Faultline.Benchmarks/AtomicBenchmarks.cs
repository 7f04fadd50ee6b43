using BenchmarkDotNet.Attributes;

namespace Faultline.Benchmarks;

/// <summary>
/// Atomics on resident, writable memory against a plain store of the same width, all TLB hits: 64 operations per
/// invocation on one page, one Cpu, no contention. <c>FetchAdd&lt;ulong&gt;</c> is <c>lock xadd</c>,
/// <c>CompareExchange&lt;ulong&gt;</c> <c>lock cmpxchg</c>; <c>FetchXor&lt;ulong&gt;</c> and <c>FetchAdd&lt;byte&gt;</c> are
/// compare-exchange loops (the runtime has no instruction for them), which succeed at once without contention.
/// </summary>
[MemoryDiagnoser]
public class AtomicBenchmarks
{
    private const int Operations = 64;

    private AddressSpace? _space;
    private Cpu? _cpu;
    private Cpu? _idle;
    private ulong _page;

    /// <summary>Maps and populates one page.</summary>
    [GlobalSetup]
    public void Setup()
    {
        (_space, _cpu, _idle) = Spaces.Create(BenchPath.VmaLock, 64L << 20);
        _page = _space.Map(0, 4096, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        _cpu.Store(_page, 0L);
    }

    /// <summary>A plain 8-byte store (the baseline).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Operations)]
    public void Store()
    {
        Cpu cpu = _cpu!;
        for (int i = 0; i < Operations; i++)
        {
            cpu.Store(_page + (ulong)(i * 8), (ulong)i);
        }
    }

    /// <summary><c>Exchange&lt;ulong&gt;</c>.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public ulong Exchange()
    {
        Cpu cpu = _cpu!;
        ulong sum = 0;
        for (int i = 0; i < Operations; i++)
        {
            sum += cpu.Exchange(_page + (ulong)(i * 8), (ulong)i);
        }
        return sum;
    }

    /// <summary><c>FetchAdd&lt;ulong&gt;</c>.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public ulong FetchAdd()
    {
        Cpu cpu = _cpu!;
        ulong sum = 0;
        for (int i = 0; i < Operations; i++)
        {
            sum += cpu.FetchAdd(_page + (ulong)(i * 8), 1UL);
        }
        return sum;
    }

    /// <summary><c>CompareExchange&lt;ulong&gt;</c> that succeeds.</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public ulong CompareExchange()
    {
        Cpu cpu = _cpu!;
        ulong sum = 0;
        for (int i = 0; i < Operations; i++)
        {
            ulong address = _page + (ulong)(i * 8);
            ulong seen = cpu.Load<ulong>(address);
            sum += cpu.CompareExchange(address, seen + 1, seen);
        }
        return sum;
    }

    /// <summary><c>FetchXor&lt;ulong&gt;</c> (a compare-exchange loop).</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public ulong FetchXor()
    {
        Cpu cpu = _cpu!;
        ulong sum = 0;
        for (int i = 0; i < Operations; i++)
        {
            sum += cpu.FetchXor(_page + (ulong)(i * 8), 1UL);
        }
        return sum;
    }

    /// <summary><c>FetchAdd&lt;byte&gt;</c> (a one-byte compare-exchange loop).</summary>
    [Benchmark(OperationsPerInvoke = Operations)]
    public int FetchAddByte()
    {
        Cpu cpu = _cpu!;
        int sum = 0;
        for (int i = 0; i < Operations; i++)
        {
            sum += cpu.FetchAdd(_page + (ulong)i, (byte)1);
        }
        return sum;
    }

    /// <summary>Releases the address space.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _idle?.Dispose();
        _cpu?.Dispose();
        _space?.Dispose();
    }
}
