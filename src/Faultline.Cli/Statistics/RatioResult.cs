namespace Faultline.Cli.Statistics;

/// <summary>One ratio of two rows of the same repeat.</summary>
/// <param name="Kind">What is compared.</param>
/// <param name="Path">The numerator's path.</param>
/// <param name="Versus">The denominator: a path name, or <c>churn 0</c>.</param>
/// <param name="Workload">The configuration's workload.</param>
/// <param name="Threads">Its faulting threads.</param>
/// <param name="Churn">The numerator's churn threads.</param>
/// <param name="Repeat">The repeat both rows belong to.</param>
/// <param name="Value">Numerator ÷ denominator; above 1 means the numerator did more per second.</param>
internal sealed record RatioResult(RatioKind Kind, string Path, string Versus, string Workload, int Threads, int Churn, int Repeat, double Value)
{
    /// <summary>How the ratio reads in a report: "vma-lock ÷ mmap-lock", "vma-lock churn 1 ÷ churn 0".</summary>
    public string Name => Kind switch
    {
        RatioKind.WithVersusWithoutChurn => $"{Path} churn {Churn} ÷ {Versus}",
        RatioKind.ForkLatencyVersusKernel => $"{Path} fork ms ÷ {Versus}",
        RatioKind.NsPerFaultVersusKernel => $"{Path} ns/fault ÷ {Versus}",
        RatioKind.ChurnOpsVersusKernel => $"{Path} churn ops/s ÷ {Versus}",
        _ => $"{Path} ÷ {Versus}",
    };
}
