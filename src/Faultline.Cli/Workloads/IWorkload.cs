using Faultline.Cli.Paths;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>A benchmark workload (will-it-scale, pft, ebizzy style) that runs the same way on every path.</summary>
internal interface IWorkload
{
    /// <summary>The command-line name.</summary>
    string Name { get; }

    /// <summary>One line for help and reports.</summary>
    string Description { get; }

    /// <summary>True when the workload's figure is faults/s (otherwise ops/s).</summary>
    bool CountsFaults { get; }

    /// <summary>The most guest memory the workload touches at once (sizes Faultline's arena).</summary>
    long TouchedBytes(RunShape shape);

    /// <summary>
    /// True when the workload times its fault loops itself (<see cref="WorkerStats.FaultCpuSeconds"/>,
    /// <see cref="WorkerStats.FaultSeconds"/>): its set-up work (populating, forking) stays out of ns/fault and faults/s.
    /// </summary>
    bool TimesItsFaults => false;

    /// <summary>True when <see cref="RunShape.Churn"/> applies (the <c>--churn</c> list multiplies its configurations).</summary>
    bool UsesChurn => false;

    /// <summary>Faulting threads when <c>--threads</c> is not given (and explicit options are).</summary>
    int DefaultThreads => 1;

    /// <summary>Churn threads when <c>--churn</c> is not given, for a workload that <see cref="UsesChurn"/>.</summary>
    int DefaultChurn => 1;

    /// <summary>True when the workload runs one thread only (the <c>--threads</c> list does not apply).</summary>
    bool SingleThreaded => false;

    /// <summary>Null when the workload can run on <paramref name="path"/>; else one line saying why it cannot.</summary>
    string? Unavailable(PathKind path) => null;

    /// <summary>True when each counted fault stands for one 4 KiB page touched, so the report gives bytes/s too.</summary>
    bool ReportsBytes => false;

    /// <summary>Prepares a run on <paramref name="target"/>; workers then call <see cref="IWorkloadRun.Run"/>.</summary>
    IWorkloadRun Start(IMemoryTarget target, RunShape shape);

    /// <summary>
    /// Non-null when Faultline's address space gets this swap area and only half of <see cref="TouchedBytes"/> as RAM
    /// (the row then gives pages swapped in and out per second, and the area's floor).
    /// </summary>
    SwapAreaKind? SwapArea => null;

    /// <summary>Non-null when the row's faults are this counter's delta rather than what the workers counted.</summary>
    string? FaultCounter => null;
}

/// <summary>One run of a workload: shared state of its workers.</summary>
internal interface IWorkloadRun
{
    /// <summary>
    /// Runs worker <paramref name="worker"/> (0 ≤ worker &lt; <see cref="RunShape.Workers"/>; the first
    /// <see cref="RunShape.Threads"/> fault, the rest churn) until <paramref name="phase"/> asks to stop. Called once
    /// per phase on the same thread with the same <paramref name="memory"/>. Records results and failures in
    /// <paramref name="stats"/>; must not throw for a verification failure.
    /// </summary>
    void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats);
}
