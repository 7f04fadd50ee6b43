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
}
