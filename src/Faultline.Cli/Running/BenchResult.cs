namespace Faultline.Cli.Running;

/// <summary>
/// One measured run: the figures and the counters of the address space over the measured phase (for the kernel
/// path, getrusage of the process). Serialized with snake_case names into the <c>--json</c> report.
/// </summary>
internal sealed record BenchResult
{
    /// <summary>The repeat this run belongs to (0-based).</summary>
    public int Repeat { get; init; }
    /// <summary>The run's place in its repeat's shuffled order (0-based).</summary>
    public int Order { get; init; }
    /// <summary>Workload name.</summary>
    public required string Workload { get; init; }
    /// <summary>Path name.</summary>
    public required string Path { get; init; }
    /// <summary>Faulting (or, for mmap1, mapping) threads.</summary>
    public required int Threads { get; init; }
    /// <summary>Churn threads (mixed, fork-churn) or mutating threads (malloc).</summary>
    public required int Churn { get; init; }
    /// <summary>Measured wall-clock seconds.</summary>
    public required double Seconds { get; init; }
    /// <summary>Workload operations (iterations) completed.</summary>
    public required long Ops { get; init; }
    /// <summary><see cref="Ops"/> per second.</summary>
    public required double OpsPerSec { get; init; }
    /// <summary>First-touch page faults the workload caused.</summary>
    public required long Faults { get; init; }
    /// <summary><see cref="Faults"/> per second (for the fork workloads, per second of their fault loops).</summary>
    public required double FaultsPerSec { get; init; }
    /// <summary>Bytes touched per second, for a workload whose faults count 4 KiB pages (<c>IWorkload.ReportsBytes</c>).</summary>
    public double? BytesPerSec { get; init; }
    /// <summary>
    /// CPU time of the faulting threads per fault, in ns (0 when there are no faults). For the fork workloads, the CPU
    /// time of their copy-on-write write loops only (for <c>fork</c>, the child's), each fault copying 4 KiB.
    /// </summary>
    public required double NsPerFault { get; init; }
    /// <summary>Map/protect/unmap calls of the churn threads per second (malloc: the mutators' brk/mmap/mremap/madvise/munmap calls).</summary>
    public required double ChurnOpsPerSec { get; init; }
    /// <summary>Fork workloads: mean latency of one fork call in ms (null for other workloads).</summary>
    public double? ForkMs { get; init; }
    /// <summary>Fork workloads: forks measured.</summary>
    public long? Forks { get; init; }
    /// <summary><c>fork</c>: the parent's write faults after the child went.</summary>
    public long? ParentFaults { get; init; }
    /// <summary><c>fork</c>: CPU ns per fault of the parent's write loop.</summary>
    public double? ParentNsPerFault { get; init; }
    /// <summary><c>fork</c>: how many of <see cref="ParentFaults"/> copied the page rather than reused it (null: unknown).</summary>
    public long? ParentCopies { get; init; }
    /// <summary>
    /// Counter deltas over the measured phase; for Faultline's <c>fork</c> also the children's counters, summed over
    /// the run, as <c>child.NAME</c>.
    /// </summary>
    public required IReadOnlyDictionary<string, long> Counters { get; init; }
    /// <summary>CPU seconds of the faulting threads (getrusage RUSAGE_THREAD; for the fork workloads, of their fault loops).</summary>
    public required double CpuSeconds { get; init; }
    /// <summary>Host minor faults of the whole process over the measured phase (getrusage RUSAGE_SELF).</summary>
    public required long HostMinorFaults { get; init; }
    /// <summary>Values read back wrong, or failed operations.</summary>
    public required long Mismatches { get; init; }
    /// <summary>The first failure, if any.</summary>
    public string? Error { get; init; }
    /// <summary>Swap workloads: the swap area's kind (<c>compressed</c> or <c>file</c>).</summary>
    public string? SwapArea { get; init; }
    /// <summary>Swap workloads: pages read in from the swap area per second (<c>pswpin</c>).</summary>
    public double? SwapinsPerSec { get; init; }
    /// <summary>Swap workloads: pages written out to the swap area per second (<c>pswpout</c>).</summary>
    public double? SwapoutsPerSec { get; init; }
    /// <summary>Swap workloads: pages per second a fresh area of the same kind writes sequentially, nothing else running.</summary>
    public double? FloorWritesPerSec { get; init; }
    /// <summary>Swap workloads: pages per second that area reads back sequentially.</summary>
    public double? FloorReadsPerSec { get; init; }
    /// <summary>
    /// Swap workloads: the floor's pages per second for one write plus one read each, over <see cref="SwapinsPerSec"/>
    /// (1 would be the area's own speed; the aim for sequential access is at most 2).
    /// </summary>
    public double? FloorRatio { get; init; }
    /// <summary>True when every value read back was the one written.</summary>
    public bool Verified => Mismatches == 0 && Error is null;
}
