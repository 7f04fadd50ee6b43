using Faultline.Cli.Paths;
using Faultline.Cli.Reporting;
using Faultline.Cli.Running;
using Faultline.Cli.Workloads;

namespace Faultline.Tests.Cli;

/// <summary>One short real measurement shared by the malloc report tests: 1 touching + 2 mutating threads on every path, one repeat.</summary>
public sealed class MallocReport
{
    private static readonly TimeSpan Duration = TimeSpan.FromMilliseconds(200);

    /// <summary>Runs the measurement.</summary>
    public MallocReport()
    {
        var malloc = new MallocWorkload();
        var results = new List<BenchResult>();
        foreach ((PathKind path, int order) in PathNames.All.Select((p, i) => (p, i)))
        {
            results.Add(BenchRunner.Run(malloc, path, new RunShape(1, 2), Duration) with { Order = order });
        }
        Report = BenchReport.Create(MachineInfo.Collect(), GitCommit.Current(), 1, Duration.TotalSeconds, results, []);
    }

    internal BenchReport Report { get; }
}
