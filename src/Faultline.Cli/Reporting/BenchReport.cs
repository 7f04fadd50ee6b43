using Faultline.Cli.Paths;
using Faultline.Cli.Running;
using Faultline.Cli.Statistics;
using Faultline.Cli.Workloads;

namespace Faultline.Cli.Reporting;

/// <summary>
/// Everything one <c>bench</c> invocation measured: every run of every repeat, the floors, the ratios computed within
/// each repeat, and their summaries (median and range over the repeats). The <c>--json</c> file is this record.
/// </summary>
/// <param name="Machine">Where it ran, with the host facts the kernel figures depend on.</param>
/// <param name="Commit">The git commit measured (<c>git rev-parse HEAD</c>), or <c>unknown</c>.</param>
/// <param name="Repeats">How many times every case ran.</param>
/// <param name="SecondsPerRun">Measured seconds of each run.</param>
/// <param name="Results">One row per run, with its repeat index.</param>
/// <param name="Floors">One row per floor and repeat.</param>
/// <param name="Ratios">One row per ratio and repeat.</param>
/// <param name="Summary">One row per case: each figure's median and range.</param>
/// <param name="RatioSummary">One row per ratio: median and range of the per-repeat values.</param>
/// <param name="FloorSummary">One row per floor: median and range.</param>
/// <param name="Skipped">One line per workload and path that was not run, saying why.</param>
internal sealed record BenchReport(MachineInfo Machine, string Commit, int Repeats, double SecondsPerRun,
    IReadOnlyList<BenchResult> Results, IReadOnlyList<FloorResult> Floors, IReadOnlyList<RatioResult> Ratios,
    IReadOnlyList<CaseSummary> Summary, IReadOnlyList<RatioSummary> RatioSummary, IReadOnlyList<FloorSummary> FloorSummary,
    IReadOnlyList<string> Skipped)
{
    /// <summary>Computes the ratios and the summaries of the runs and floors.</summary>
    public static BenchReport Create(MachineInfo machine, string commit, int repeats, double secondsPerRun,
        IReadOnlyList<BenchResult> results, IReadOnlyList<FloorResult> floors, IReadOnlyList<string>? skipped = null)
    {
        IReadOnlyList<RatioResult> ratios = RatioCalculator.PerRepeat(results);
        List<CaseSummary> summary = results
            .GroupBy(r => (r.Workload, r.Threads, r.Churn, r.Path))
            .OrderBy(g => ReportOrder(g.Key.Workload, g.Key.Threads, g.Key.Churn, g.Key.Path))
            .Select(g => new CaseSummary(g.Key.Workload, g.Key.Path, g.Key.Threads, g.Key.Churn, g.Count(),
                Spread.Of(g.Select(r => r.OpsPerSec)), Spread.Of(g.Select(r => r.FaultsPerSec)),
                Spread.Of(g.Select(r => r.NsPerFault)), Spread.Of(g.Select(r => r.ChurnOpsPerSec)), g.All(r => r.Verified),
                SpreadOrNull(g.Select(r => r.ForkMs)), SpreadOrNull(g.Select(r => r.ParentNsPerFault)),
                SpreadOrNull(g.Select(r => r.ParentCopies is { } copies && r.ParentFaults is > 0 ? copies / (double)r.ParentFaults : (double?)null))))
            .ToList();
        List<FloorSummary> floorSummary = floors.GroupBy(f => f.Name)
            .Select(g => new FloorSummary(g.Key, Spread.Of(g.Select(f => f.NsPerOp))))
            .ToList();
        List<RatioSummary> ratioSummary = RatioCalculator.Summarize(ratios)
            .OrderBy(r => ReportOrder(r.Workload, r.Threads, r.Churn, r.Path)).ThenBy(r => r.Kind).ToList();
        return new BenchReport(machine, commit, repeats, secondsPerRun, results, floors, ratios, summary, ratioSummary, floorSummary,
            skipped ?? []);
    }

    // The spread of the values every run of a case has; null when any run lacks the figure.
    private static Spread? SpreadOrNull(IEnumerable<double?> values)
    {
        List<double?> list = values.ToList();
        return list.All(v => v.HasValue) ? Spread.Of(list.Select(v => v!.Value)) : null;
    }

    // Workloads and paths in catalog order, then by threads and churn: the order of the suite, whatever the shuffle.
    private static (int, int, int, int) ReportOrder(string workload, int threads, int churn, string path) =>
        (Array.FindIndex(WorkloadCatalog.All, w => w.Name == workload), threads, churn, PathNames.Order(path));

    /// <summary>The summary of one ratio of a case, or null when the run has no such ratio.</summary>
    public RatioSummary? RatioOf(CaseSummary row, RatioKind kind) =>
        RatioSummary.FirstOrDefault(r => r.Kind == kind && r.Path == row.Path && r.Workload == row.Workload
            && r.Threads == row.Threads && r.Churn == row.Churn);
}
