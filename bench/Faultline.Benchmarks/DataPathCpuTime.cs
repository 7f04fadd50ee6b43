using System.Globalization;
using System.Runtime.InteropServices;
using Faultline.Host;

namespace Faultline.Benchmarks;

/// <summary>
/// <c>--cpu-time [--repeat N] [--only TEXT]</c>: the loops of <see cref="TlbBenchmarks"/> (<see cref="DataPathLoops"/>) timed with the
/// measuring thread's own CPU clock (<c>CLOCK_THREAD_CPUTIME_ID</c>), every row beside its raw-load floor in each round,
/// rows in a rotating order. On a shared machine a neighbour's burst stretches wall time but not this thread's CPU
/// time, so these ratios move less than BenchmarkDotNet's. Prints ns per operation and the ratio to the floor of the
/// same round, median [min–max] over the measured rounds (two warm-up rounds first, for tiered PGO to settle).
/// <c>--only</c> keeps the rows whose name contains TEXT and their floors (for a profiler: <c>--only miss</c>).
/// </summary>
internal static unsafe partial class DataPathCpuTime
{
    private const int ClockThreadCpuTime = 3;
    private const long HitOperations = 32_000_000;
    private const long MissOperations = 64 * DataPathLoops.MissPages;
    private const int WarmupRounds = 2;

    private sealed record Row(string Name, int OperationsPerCall, long Operations, string? Floor, Func<long> Call);

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, TimeSpec* time);

    /// <summary>Runs <paramref name="repeat"/> measured rounds of the rows (all, or those naming <paramref name="only"/>) and prints the table.</summary>
    public static void Run(int repeat, string? only)
    {
        const ulong length = DataPathLoops.MissLength;
        ulong raw = (ulong)LibC.MapAnonymousSmallPages(length);
        (AddressSpace space, Cpu cpu, Cpu idle) = Spaces.Create(BenchPath.VmaLock, (long)length + (64L << 20));
        try
        {
            ulong guest = space.Map(0, length, Protection.ReadWrite, MapFlags.PrivateAnonymous);
            for (ulong p = 0; p < length; p += 4096)
            {
                *(long*)(raw + p) = (long)p;
                cpu.Store(guest + p, (long)p);
            }
            const int hit = DataPathLoops.HitLoads;
            const int block = DataPathLoops.HitLoads * DataPathLoops.QuiescentBlocks;
            Row[] rows =
            [
                new("raw load, TLB hit loop (floor)", hit, HitOperations, null, () => DataPathLoops.RawHit(raw)),
                new("Load<long>, TLB hit", hit, HitOperations, "raw load, TLB hit loop (floor)", () => DataPathLoops.PlainHit(cpu, guest)),
                new("CpuScope.Load<long>, TLB hit, one scope per 64 loads", hit, HitOperations, "raw load, TLB hit loop (floor)",
                    () => DataPathLoops.ScopePerLoop(cpu, guest)),
                new("raw load, TLB hit, 64 blocks of 64 (floor)", block, HitOperations, null, () => DataPathLoops.RawHitBlocks(raw)),
                new("CpuScope.Load<long>, TLB hit, quiescent point per 64 (Unicorn-like)", block, HitOperations, "raw load, TLB hit, 64 blocks of 64 (floor)",
                    () => QuiescentBlocks(cpu, guest)),
                new("raw load, TLB miss sweep (floor)", DataPathLoops.MissPages, MissOperations, null, () => DataPathLoops.RawMiss(raw)),
                new("Load<ulong>, TLB miss (walk, refill)", DataPathLoops.MissPages, MissOperations, "raw load, TLB miss sweep (floor)",
                    () => DataPathLoops.PlainMiss(cpu, guest)),
                new("EnterScope + Dispose", hit, HitOperations / 64, null, () => DataPathLoops.ScopeOpenClose(cpu)),
                new("QuiescentPoint()", hit, HitOperations / 16, null, () => QuiescentPoints(cpu)),
            ];
            if (only is not null)
            {
                var kept = rows.Where(r => r.Name.Contains(only, StringComparison.OrdinalIgnoreCase)).ToList();
                rows = [.. rows.Where(r => kept.Contains(r) || kept.Any(k => k.Floor == r.Name))];
            }
            Console.WriteLine($"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load average {LoadAverage()}, {repeat} rounds after {WarmupRounds} warm-up rounds");
            var perOp = rows.ToDictionary(r => r.Name, _ => new List<double>());
            var ratios = rows.ToDictionary(r => r.Name, _ => new List<double>());
            for (int round = 0; round < WarmupRounds + repeat; round++)
            {
                var times = new Dictionary<string, double>();
                for (int k = 0; k < rows.Length; k++)
                {
                    Row row = rows[(k + round) % rows.Length];
                    times[row.Name] = Time(row);
                }
                if (round < WarmupRounds)
                {
                    continue;
                }
                foreach (Row row in rows)
                {
                    perOp[row.Name].Add(times[row.Name]);
                    if (row.Floor is { } floor)
                    {
                        ratios[row.Name].Add(times[row.Name] / times[floor]);
                    }
                }
            }
            Console.WriteLine($"load average at the end {LoadAverage()}");
            Console.WriteLine("| row | ns/op, median [min–max] | ÷ floor of the same round |");
            Console.WriteLine("|---|---|---|");
            foreach (Row row in rows)
            {
                string ratio = row.Floor is null ? "" : Summary(ratios[row.Name], "F2") + "×";
                Console.WriteLine($"| {row.Name} | {Summary(perOp[row.Name], "F2")} | {ratio} |");
            }
        }
        finally
        {
            idle.Dispose();
            cpu.Dispose();
            space.Dispose();
            LibC.Munmap((nint)raw, (nuint)length);
        }
    }

    private static long QuiescentBlocks(Cpu cpu, ulong guest)
    {
        using CpuScope scope = cpu.EnterScope();
        return DataPathLoops.ScopedHitQuiescent(scope, guest);
    }

    private static long QuiescentPoints(Cpu cpu)
    {
        using CpuScope scope = cpu.EnterScope();
        return DataPathLoops.QuiescentPoints(scope);
    }

    // ns of this thread's CPU time per operation over row.Operations operations.
    private static double Time(Row row)
    {
        long calls = Math.Max(1, row.Operations / row.OperationsPerCall);
        long sink = 0;
        long start = ThreadCpuNanoseconds();
        for (long c = 0; c < calls; c++)
        {
            sink += row.Call();
        }
        long elapsed = ThreadCpuNanoseconds() - start;
        GC.KeepAlive(sink);
        return (double)elapsed / (calls * row.OperationsPerCall);
    }

    private static long ThreadCpuNanoseconds()
    {
        TimeSpec time;
        if (ClockGetTime(ClockThreadCpuTime, &time) != 0)
        {
            throw new InvalidOperationException("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        }
        return time.Seconds * 1_000_000_000 + time.Nanoseconds;
    }

    private static string Summary(List<double> values, string format)
    {
        double[] sorted = [.. values.Order()];
        double median = sorted.Length % 2 == 1
            ? sorted[sorted.Length / 2]
            : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
        CultureInfo c = CultureInfo.InvariantCulture;
        return $"{median.ToString(format, c)} [{sorted[0].ToString(format, c)}–{sorted[^1].ToString(format, c)}]";
    }

    private static string LoadAverage() => string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
}
