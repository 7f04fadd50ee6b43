namespace Faultline.Cli.Statistics;

/// <summary>One ratio over the repeats: the median and range of the per-repeat values.</summary>
/// <param name="Kind">What is compared.</param>
/// <param name="Name">How it reads: "vma-lock ÷ mmap-lock".</param>
/// <param name="Path">The numerator's path.</param>
/// <param name="Workload">The configuration's workload.</param>
/// <param name="Threads">Its faulting threads.</param>
/// <param name="Churn">The numerator's churn threads.</param>
/// <param name="Value">Median and range of the ratio computed within each repeat.</param>
internal sealed record RatioSummary(RatioKind Kind, string Name, string Path, string Workload, int Threads, int Churn, Spread Value);
