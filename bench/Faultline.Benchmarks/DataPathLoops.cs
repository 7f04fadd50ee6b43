using System.Runtime.CompilerServices;

namespace Faultline.Benchmarks;

/// <summary>
/// The measured loops of <see cref="TlbBenchmarks"/> and <see cref="DataPathCpuTime"/>: one method per row, out of line,
/// so both time the same code and <c>DOTNET_JitDisasm='DataPathLoops:*'</c> shows it. A hit loop is 64 loads of one
/// page (the software TLB hits); a miss sweep is one load per page over more pages than the TLB holds. The raw rows
/// are the same loops as pointer loads: the floors.
/// </summary>
internal static unsafe class DataPathLoops
{
    /// <summary>Loads per hit loop (one page).</summary>
    public const int HitLoads = 64;

    /// <summary>Hit loops per quiescent-point row: one scope, a quiescent point after each loop.</summary>
    public const int QuiescentBlocks = 64;

    /// <summary>Pages per miss sweep: 16 times a 1,024-entry TLB.</summary>
    public const int MissPages = 16384;

    /// <summary>Bytes a miss sweep covers.</summary>
    public const ulong MissLength = MissPages * 4096UL;

    /// <summary>The raw-load floor of a hit loop.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static long RawHit(ulong a)
    {
        long sum = 0;
        for (int i = 0; i < HitLoads; i++)
        {
            sum += *(long*)(a + (ulong)(i * 8));
        }
        return sum;
    }

    /// <summary><c>Load&lt;long&gt;</c> hits outside a scope.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static long PlainHit(Cpu cpu, ulong a)
    {
        long sum = 0;
        for (int i = 0; i < HitLoads; i++)
        {
            sum += cpu.Load<long>(a + (ulong)(i * 8));
        }
        return sum;
    }

    /// <summary><c>CpuScope.Load&lt;long&gt;</c> hits through an open scope.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static long ScopedHit(CpuScope scope, ulong a)
    {
        long sum = 0;
        for (int i = 0; i < HitLoads; i++)
        {
            sum += scope.Load<long>(a + (ulong)(i * 8));
        }
        return sum;
    }

    /// <summary>One scope per hit loop: open, 64 scoped hits, close.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static long ScopePerLoop(Cpu cpu, ulong a)
    {
        using CpuScope scope = cpu.EnterScope();
        return ScopedHit(scope, a);
    }

    /// <summary>
    /// The shape of an emulator's vCPU loop, the row set against Unicorn 2's TLB hit: one open scope, 64 blocks of 64
    /// scoped hits, a quiescent point after each block.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static long ScopedHitQuiescent(CpuScope scope, ulong a)
    {
        long sum = 0;
        for (int block = 0; block < QuiescentBlocks; block++)
        {
            for (int i = 0; i < HitLoads; i++)
            {
                sum += scope.Load<long>(a + (ulong)(i * 8));
            }
            scope.QuiescentPoint();
        }
        return sum;
    }

    /// <summary>The raw floor of <see cref="ScopedHitQuiescent"/>: the same 64 × 64 loads.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static long RawHitBlocks(ulong a)
    {
        long sum = 0;
        for (int block = 0; block < QuiescentBlocks; block++)
        {
            for (int i = 0; i < HitLoads; i++)
            {
                sum += *(long*)(a + (ulong)(i * 8));
            }
        }
        return sum;
    }

    /// <summary>The raw floor of a miss sweep: one load per page, which misses the hardware TLB.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static long RawMiss(ulong a)
    {
        ulong sum = 0;
        for (ulong p = 0; p < MissLength; p += 4096)
        {
            sum += *(ulong*)(a + p);
        }
        return (long)sum;
    }

    /// <summary>
    /// 8-byte loads that miss: every load walks a present PTE and refills the TLB. <c>Load&lt;ulong&gt;</c>, the same
    /// code as <c>Load&lt;long&gt;</c> but its own instantiation, so the hit rows' profile (tiered PGO lays the hit
    /// out by it) is not mixed with misses when both run in one process (<c>--cpu-time</c>).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static long PlainMiss(Cpu cpu, ulong a)
    {
        ulong sum = 0;
        for (ulong p = 0; p < MissLength; p += 4096)
        {
            sum += cpu.Load<ulong>(a + p);
        }
        return (long)sum;
    }

    /// <summary>64 scopes opened and closed, nothing accessed: what a scope per block adds.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static long ScopeOpenClose(Cpu cpu)
    {
        for (int i = 0; i < HitLoads; i++)
        {
            cpu.EnterScope().Dispose();
        }
        return 0;
    }

    /// <summary>64 quiescent points of an open scope with no writer waiting.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static long QuiescentPoints(CpuScope scope)
    {
        for (int i = 0; i < HitLoads; i++)
        {
            scope.QuiescentPoint();
        }
        return 0;
    }
}
