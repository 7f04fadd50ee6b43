namespace Faultline.Cli.Commands;

/// <summary>What <c>bench</c> was asked to measure.</summary>
/// <param name="Workloads"><c>--workload</c>, null for the suite.</param>
/// <param name="Paths"><c>--path</c>, null for all.</param>
/// <param name="Threads"><c>--threads</c>.</param>
/// <param name="Churn"><c>--churn</c>.</param>
/// <param name="Seconds"><c>--seconds</c>: measured seconds per run.</param>
/// <param name="Repeats"><c>--repeat</c>: runs of every case.</param>
/// <param name="ForkMib"><c>--fork-mib</c>: the fork workloads' region.</param>
internal sealed record BenchOptions(string? Workloads, string? Paths, string? Threads, string? Churn, double Seconds, int Repeats, int ForkMib);
