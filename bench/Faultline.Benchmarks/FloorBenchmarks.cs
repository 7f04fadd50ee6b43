using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;

namespace Faultline.Benchmarks;

/// <summary>
/// The floors: zeroing a 4 KiB page-aligned buffer (<c>clear_page</c>, the least a first-touch fault must do) — once
/// cache-hot, once cold (successive pages of a 256 MiB buffer, as a first touch meets them) — and a raw pointer load
/// of cached memory (the least a guest load can cost).
/// </summary>
[MemoryDiagnoser]
public unsafe class FloorBenchmarks
{
    private const int ColdPages = 65536;

    private byte* _page;
    private byte* _cold;
    private int _nextCold;

    /// <summary>Allocates one aligned page.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _page = (byte*)NativeMemory.AlignedAlloc(4096, 4096);
        new Span<byte>(_page, 4096).Fill(1);
        _cold = (byte*)NativeMemory.AlignedAlloc((nuint)ColdPages * 4096, 4096);
        new Span<byte>(_cold, ColdPages * 4096).Fill(1);
    }

    /// <summary>Zero 4 KiB.</summary>
    [Benchmark]
    public void Zero4KiB() => new Span<byte>(_page, 4096).Clear();

    /// <summary>Zero the next 4 KiB of a 256 MiB buffer: the page is not in any cache, as at a first touch.</summary>
    [Benchmark]
    public void ZeroCold4KiB()
    {
        new Span<byte>(_cold + (long)_nextCold * 4096, 4096).Clear();
        _nextCold = (_nextCold + 1) & (ColdPages - 1);
    }

    /// <summary>A raw pointer load (64 per invocation, like the TLB-hit benchmark).</summary>
    [Benchmark(OperationsPerInvoke = 64)]
    public long RawPointerLoad()
    {
        long sum = 0;
        for (int i = 0; i < 64; i++)
        {
            sum += *(long*)(_page + i * 8);
        }
        return sum;
    }

    /// <summary>Frees the page.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_page);
        NativeMemory.AlignedFree(_cold);
    }
}
