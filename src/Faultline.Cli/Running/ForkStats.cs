namespace Faultline.Cli.Running;

/// <summary>
/// What one worker of a fork workload measured in one phase: the fork calls, and the parent's write loop after each
/// (the child's loop is the workload's fault figure, <see cref="WorkerStats.Faults"/>). Written by that worker only;
/// read after the phase.
/// </summary>
internal sealed class ForkStats
{
    /// <summary>Forks timed.</summary>
    public long Forks;

    /// <summary>Wall-clock seconds inside the fork calls.</summary>
    public double ForkSeconds;

    /// <summary>Write faults of the parent's loops.</summary>
    public long ParentFaults;

    /// <summary>CPU seconds of the parent's loops.</summary>
    public double ParentCpuSeconds;

    /// <summary>Parent faults that copied the page instead of reusing it; -1 once any loop could not tell.</summary>
    public long ParentCopies;

    /// <summary>
    /// Faultline's children: the sum of their counters at the end of their lives (a child's counters are its own, so
    /// the parent's counters do not show its copy-on-write faults). Reported with a <c>child.</c> prefix.
    /// </summary>
    public Dictionary<string, long> ChildCounters { get; } = new(StringComparer.Ordinal);

    /// <summary>Adds a child's counters to <see cref="ChildCounters"/>.</summary>
    public void AddChild(IReadOnlyDictionary<string, long> counters)
    {
        foreach ((string name, long value) in counters)
        {
            ChildCounters[name] = ChildCounters.GetValueOrDefault(name) + value;
        }
    }

    /// <summary>Adds the parent figures of one iteration (<paramref name="copies"/> -1: unknown).</summary>
    public void AddParent(long faults, double cpuSeconds, long copies)
    {
        ParentFaults += faults;
        ParentCpuSeconds += cpuSeconds;
        ParentCopies = ParentCopies < 0 || copies < 0 ? -1 : ParentCopies + copies;
    }
}
