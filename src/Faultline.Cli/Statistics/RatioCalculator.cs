using Faultline.Cli.Reporting;
using Faultline.Cli.Running;

namespace Faultline.Cli.Statistics;

/// <summary>
/// The ratios of a run, each computed from two rows of the same repeat (so the slow stretch of a shared machine
/// lowers both sides), then summarized over the repeats.
/// </summary>
internal static class RatioCalculator
{
    private const string Kernel = "kernel";
    private const string MmapLock = "mmap-lock";

    /// <summary>
    /// Every ratio the rows allow, per repeat: path ÷ kernel, path ÷ mmap-lock, with ÷ without churn; for the fork
    /// workloads also fork latency and CPU per fault ÷ the kernel's; with churn threads also churn ops/s ÷ the kernel's.
    /// </summary>
    public static IReadOnlyList<RatioResult> PerRepeat(IReadOnlyList<BenchResult> results)
    {
        var ratios = new List<RatioResult>();
        foreach (BenchResult row in results.Where(r => r.Path != Kernel))
        {
            double value = Headline.Of(row).Value;
            Add(ratios, RatioKind.VersusKernel, row, Kernel, value, Find(results, row, Kernel, row.Churn));
            if (row.Path != MmapLock)
            {
                Add(ratios, RatioKind.VersusMmapLock, row, MmapLock, value, Find(results, row, MmapLock, row.Churn));
            }
            if (row.ForkMs is { } forkMs && FindRow(results, row, Kernel, row.Churn) is { ForkMs: { } kernelForkMs } kernel)
            {
                Add(ratios, RatioKind.ForkLatencyVersusKernel, row, Kernel, forkMs, kernelForkMs);
                Add(ratios, RatioKind.NsPerFaultVersusKernel, row, Kernel, row.NsPerFault, kernel.NsPerFault);
            }
            if (row.Churn > 0)
            {
                Add(ratios, RatioKind.ChurnOpsVersusKernel, row, Kernel, row.ChurnOpsPerSec, FindRow(results, row, Kernel, row.Churn)?.ChurnOpsPerSec);
            }
        }
        foreach (BenchResult row in results.Where(r => r.Churn > 0))
        {
            Add(ratios, RatioKind.WithVersusWithoutChurn, row, "churn 0", Headline.Of(row).Value, Find(results, row, row.Path, 0));
        }
        return ratios;
    }

    /// <summary>Each ratio's median and range over the repeats, in the order the ratios first appear.</summary>
    public static IReadOnlyList<RatioSummary> Summarize(IReadOnlyList<RatioResult> ratios) =>
        ratios.GroupBy(r => (r.Kind, r.Path, r.Versus, r.Workload, r.Threads, r.Churn))
            .Select(g => new RatioSummary(g.Key.Kind, g.First().Name, g.Key.Path, g.Key.Workload, g.Key.Threads, g.Key.Churn,
                Spread.Of(g.Select(r => r.Value))))
            .ToList();

    // The row of the same repeat and faulting configuration on another path (or with another churn count).
    private static double? Find(IReadOnlyList<BenchResult> results, BenchResult row, string path, int churn) =>
        FindRow(results, row, path, churn) is { } other ? Headline.Of(other).Value : null;

    private static BenchResult? FindRow(IReadOnlyList<BenchResult> results, BenchResult row, string path, int churn) =>
        results.FirstOrDefault(r => r.Repeat == row.Repeat && r.Workload == row.Workload && r.Threads == row.Threads
            && r.Churn == churn && r.Path == path);

    private static void Add(List<RatioResult> ratios, RatioKind kind, BenchResult row, string versus, double value, double? denominator)
    {
        if (denominator is > 0)
        {
            ratios.Add(new RatioResult(kind, row.Path, versus, row.Workload, row.Threads, row.Churn, row.Repeat, value / denominator.Value));
        }
    }
}
