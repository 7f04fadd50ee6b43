namespace Faultline.Cli.Paths;

/// <summary>
/// One snapshot of <c>Native/malloc_bench.c</c>'s cumulative counters, or the difference of two (a measured interval).
/// </summary>
/// <param name="Seconds">CLOCK_MONOTONIC at the snapshot (of an interval: its length).</param>
/// <param name="ToucherFaults">Pages the touching threads wrote first in a fresh mapping (one first-touch fault each).</param>
/// <param name="ToucherIterations">128 MiB regions the touching threads wrote, checked and unmapped.</param>
/// <param name="ToucherCpuSeconds">CPU time of the touching threads.</param>
/// <param name="MutatorOps">brk, mmap, mremap, madvise and munmap calls of the mutating threads.</param>
/// <param name="MutatorIterations">Rounds of the mutators' script.</param>
/// <param name="BrkCalls">brk calls (growth and trims of the shared heap).</param>
/// <param name="Moves">mremap calls that moved the block.</param>
/// <param name="Mismatches">Pages read back wrong.</param>
internal sealed record KernelMallocFigures(double Seconds, long ToucherFaults, long ToucherIterations, double ToucherCpuSeconds,
    long MutatorOps, long MutatorIterations, long BrkCalls, long Moves, long Mismatches)
{
    private const string Program = "malloc_bench";

    /// <summary>Parses the program's snapshot line of <c>key=value</c> integers.</summary>
    /// <exception cref="FormatException">A key is missing or a value is not an integer.</exception>
    public static KernelMallocFigures Parse(string line)
    {
        IReadOnlyDictionary<string, long> values = KeyValueLine.Parse(line, Program);
        long Get(string key) => KeyValueLine.Get(values, key, Program, line);
        return new KernelMallocFigures(Get("ns") / 1e9, Get("toucher_faults"), Get("toucher_iterations"), Get("toucher_cpu_ns") / 1e9,
            Get("mutator_ops"), Get("mutator_iterations"), Get("brk_calls"), Get("moves"), Get("mismatches"));
    }

    /// <summary>What happened between <paramref name="earlier"/> and this snapshot.</summary>
    public KernelMallocFigures Since(KernelMallocFigures earlier) => new(Seconds - earlier.Seconds,
        ToucherFaults - earlier.ToucherFaults, ToucherIterations - earlier.ToucherIterations, ToucherCpuSeconds - earlier.ToucherCpuSeconds,
        MutatorOps - earlier.MutatorOps, MutatorIterations - earlier.MutatorIterations, BrkCalls - earlier.BrkCalls,
        Moves - earlier.Moves, Mismatches - earlier.Mismatches);
}
