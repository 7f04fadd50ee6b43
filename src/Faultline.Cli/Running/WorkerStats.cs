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
