namespace Faultline.Cli.Statistics;

/// <summary>One case (workload, threads, churn, path) over the repeats: each figure's median and range.</summary>
/// <param name="Workload">Workload name.</param>
/// <param name="Path">Path name.</param>
/// <param name="Threads">Faulting threads.</param>
/// <param name="Churn">Churn threads.</param>
/// <param name="Repeats">Runs summarized.</param>
/// <param name="OpsPerSec">Operations per second.</param>
/// <param name="FaultsPerSec">First-touch faults per second.</param>
/// <param name="NsPerFault">CPU ns per fault of the faulting threads.</param>
/// <param name="ChurnOpsPerSec">Churn operations per second.</param>
/// <param name="Verified">Every run read back what it wrote.</param>
/// <param name="ForkMs">Fork workloads: latency of one fork call in ms.</param>
/// <param name="ParentNsPerFault"><c>fork</c>: CPU ns per fault of the parent's writes after the child went.</param>
/// <param name="ParentCopiedShare"><c>fork</c>: the share of the parent's faults that copied the page (0 to 1), where known.</param>
internal sealed record CaseSummary(string Workload, string Path, int Threads, int Churn, int Repeats, Spread OpsPerSec,
    Spread FaultsPerSec, Spread NsPerFault, Spread ChurnOpsPerSec, bool Verified, Spread? ForkMs = null,
    Spread? ParentNsPerFault = null, Spread? ParentCopiedShare = null);
