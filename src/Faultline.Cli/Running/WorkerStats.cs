namespace Faultline.Cli.Running;

/// <summary>What one worker did in one phase. Written by that worker only; read after the phase.</summary>
internal sealed class WorkerStats
{
    /// <summary>Workload operations completed (iterations: a map/touch/unmap cycle, a map/unmap pair, a chunk...).</summary>
    public long Ops;

    /// <summary>First-touch page faults the workload caused (pages it wrote first in a fresh mapping).</summary>
    public long Faults;

    /// <summary>Address-space operations of a churn worker (map, unmap, protect calls).</summary>
    public long ChurnOps;

    /// <summary>Values read back that differ from what was written.</summary>
    public long Mismatches;

    /// <summary>CPU seconds of the thread during the phase (getrusage RUSAGE_THREAD).</summary>
    public double CpuSeconds;

    /// <summary>
    /// For a workload that times its own fault loops (<see cref="Workloads.IWorkload.TimesItsFaults"/>): CPU seconds
    /// spent in them. The figure per fault is then this ÷ <see cref="Faults"/>, not the whole phase's CPU time.
    /// </summary>
    public double FaultCpuSeconds;

    /// <summary>Wall-clock seconds spent in those fault loops (faults/s is <see cref="Faults"/> ÷ this).</summary>
    public double FaultSeconds;

    /// <summary>Fork figures (fork workloads only).</summary>
    public ForkStats Fork { get; } = new();

    /// <summary>Host minor faults of the thread during the phase.</summary>
    public long HostMinorFaults;

    /// <summary>The first failure, for the report.</summary>
    public string? Error;

    /// <summary>Records a failure (keeps the first message).</summary>
    public void Fail(string message)
    {
        Mismatches++;
        Error ??= message;
    }
}
