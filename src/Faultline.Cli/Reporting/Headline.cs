using System.Globalization;
using Faultline.Cli.Running;
using Faultline.Cli.Workloads;

namespace Faultline.Cli.Reporting;

/// <summary>The one figure a row is judged by (faults/s for faulting workloads, ops/s otherwise) and its kernel ratio.</summary>
internal static class Headline
{
    /// <summary>The figure and its unit.</summary>
    public static (double Value, string Unit) Of(BenchResult r)
    {
        IWorkload? w = WorkloadCatalog.All.FirstOrDefault(x => x.Name == r.Workload);
        return w is { CountsFaults: true } ? (r.FaultsPerSec, "faults/s") : (r.OpsPerSec, "ops/s");
    }

    /// <summary>The same configuration's kernel row, if the run has one.</summary>
    public static BenchResult? KernelOf(BenchResult r, IReadOnlyList<BenchResult> all) =>
        all.FirstOrDefault(k => k.Path == "kernel" && k.Workload == r.Workload && k.Threads == r.Threads && k.Churn == r.Churn);

    /// <summary>This row's figure over the kernel's (higher is better), or null.</summary>
    public static double? VersusKernel(BenchResult r, IReadOnlyList<BenchResult> all)
    {
        BenchResult? k = KernelOf(r, all);
        double kv = k is null ? 0 : Of(k).Value;
        return kv > 0 ? Of(r).Value / kv : null;
    }

    /// <summary>A rate with thousands separators.</summary>
    public static string Rate(double value) => value.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>A short rate: 1.23M, 456k.</summary>
    public static string Short(double value) => value switch
    {
        >= 1e6 => (value / 1e6).ToString("0.00", CultureInfo.InvariantCulture) + "M",
        >= 1e4 => (value / 1e3).ToString("0", CultureInfo.InvariantCulture) + "k",
        >= 1e3 => (value / 1e3).ToString("0.0", CultureInfo.InvariantCulture) + "k",
        _ => value.ToString("0", CultureInfo.InvariantCulture),
    };
}
