using System.Globalization;
using Faultline.Cli.Running;
using Faultline.Cli.Workloads;

namespace Faultline.Cli.Reporting;

/// <summary>The one figure a row is judged by (faults/s for faulting workloads, ops/s otherwise), and its short form.</summary>
internal static class Headline
{
    /// <summary>The figure and its unit.</summary>
    public static (double Value, string Unit) Of(BenchResult r)
    {
        IWorkload? w = WorkloadCatalog.All.FirstOrDefault(x => x.Name == r.Workload);
        return w is { CountsFaults: true } ? (r.FaultsPerSec, "faults/s") : (r.OpsPerSec, "ops/s");
    }

    /// <summary>A short rate: 1.23M, 456k.</summary>
    public static string Short(double value) => value switch
    {
        >= 1e6 => (value / 1e6).ToString("0.00", CultureInfo.InvariantCulture) + "M",
        >= 1e4 => (value / 1e3).ToString("0", CultureInfo.InvariantCulture) + "k",
        >= 1e3 => (value / 1e3).ToString("0.0", CultureInfo.InvariantCulture) + "k",
        _ => value.ToString("0", CultureInfo.InvariantCulture),
    };
}
