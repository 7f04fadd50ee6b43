namespace Faultline.Cli.Paths;

/// <summary>
/// One iteration of the fork workload on the host kernel, as <c>Native/fork_bench.c</c> reports it: the latency of
/// the real <c>fork()</c>, then the child's and the parent's write loops over every page (getrusage(RUSAGE_SELF)
/// deltas of the process running the loop; faults are its <c>ru_minflt</c> delta).
/// </summary>
/// <param name="Pages">Pages in the region.</param>
/// <param name="ForkSeconds">Wall-clock latency of <c>fork()</c> in the parent.</param>
/// <param name="ChildFaults">Minor faults of the child's write loop.</param>
/// <param name="ChildCpuSeconds">CPU time of the child's write loop.</param>
/// <param name="ChildSeconds">Wall-clock time of the child's write loop.</param>
/// <param name="ParentFaults">Minor faults of the parent's write loop (after the child exited).</param>
/// <param name="ParentCpuSeconds">CPU time of the parent's write loop.</param>
/// <param name="ParentSeconds">Wall-clock time of the parent's write loop.</param>
/// <param name="ParentCopies">Pages whose frame changed across the parent's loop (copied, not reused); -1 where the
/// kernel hides frame numbers (no CAP_SYS_ADMIN).</param>
/// <param name="Mismatches">Pages of either side whose contents were wrong after its loop.</param>
internal sealed record KernelForkFigures(long Pages, double ForkSeconds, long ChildFaults, double ChildCpuSeconds, double ChildSeconds,
    long ParentFaults, double ParentCpuSeconds, double ParentSeconds, long ParentCopies, long Mismatches)
{
    /// <summary>Parses the program's line of <c>key=value</c> integers.</summary>
    /// <exception cref="FormatException">A key is missing or a value is not an integer.</exception>
    public static KernelForkFigures Parse(string line)
    {
        IReadOnlyDictionary<string, long> values = KeyValueLine.Parse(line, "fork_bench");
        long Get(string key) => KeyValueLine.Get(values, key, "fork_bench", line);
        return new KernelForkFigures(Get("pages"), Get("fork_ns") / 1e9, Get("child_faults"), Get("child_cpu_ns") / 1e9,
            Get("child_wall_ns") / 1e9, Get("parent_faults"), Get("parent_cpu_ns") / 1e9, Get("parent_wall_ns") / 1e9,
            Get("parent_copied"), Get("child_mismatches") + Get("parent_mismatches"));
    }
}
