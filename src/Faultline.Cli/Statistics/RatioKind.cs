namespace Faultline.Cli.Statistics;

/// <summary>What a ratio compares; every ratio is computed within one repeat, then summarized over the repeats.</summary>
internal enum RatioKind
{
    /// <summary>A Faultline path's headline figure over the host kernel's, same configuration.</summary>
    VersusKernel,
    /// <summary>A scalable path's headline figure over the classic mmap-lock path's, same configuration.</summary>
    VersusMmapLock,
    /// <summary>mixed: a path's faults/s with churn threads over the same path's without churn, same faulting threads.</summary>
    WithVersusWithoutChurn,
    /// <summary>Fork workloads: a Faultline path's fork latency over the host kernel's (below 1: Faultline forks faster).</summary>
    ForkLatencyVersusKernel,
    /// <summary>Fork workloads: a Faultline path's CPU ns per fault over the host kernel's (below 1: Faultline is cheaper).</summary>
    NsPerFaultVersusKernel,
    /// <summary>
    /// Workloads with churn threads: a Faultline path's churn ops/s (map, mprotect, brk, mremap... calls) over the host
    /// kernel's, same configuration.
    /// </summary>
    ChurnOpsVersusKernel,
}
