using Faultline.Cli.Paths;
using Faultline.Cli.Reporting;
using Faultline.Cli.Running;
using Faultline.Cli.Workloads;

namespace Faultline.Tests.Cli;

/// <summary>
/// One short real measurement shared by the fork report tests: fork over 4 MiB on vma-lock and on the kernel, and
/// fork-churn 2+1 over 4 MiB on mmap-lock, in two repeats.
/// </summary>
public sealed class ForkReport
{
    private static readonly TimeSpan Duration = TimeSpan.FromMilliseconds(50);

    /// <summary>Runs the measurement.</summary>
    public ForkReport()
    {
        var fork = new ForkWorkload(4);
        var forkChurn = new ForkChurnWorkload(4);
        var results = new List<BenchResult>();
        for (int repeat = 0; repeat < 2; repeat++)
        {
            results.Add(BenchRunner.Run(fork, PathKind.VmaLock, new RunShape(1, 0), Duration) with { Repeat = repeat });
            results.Add(BenchRunner.Run(fork, PathKind.Kernel, new RunShape(1, 0), Duration) with { Repeat = repeat, Order = 1 });
            results.Add(BenchRunner.Run(forkChurn, PathKind.MmapLock, new RunShape(2, 1), Duration) with { Repeat = repeat, Order = 2 });
        }
        Report = BenchReport.Create(MachineInfo.Collect(), GitCommit.Current(), 2, Duration.TotalSeconds, results, [],
            [forkChurn.Unavailable(PathKind.Kernel)!]);
    }

    internal BenchReport Report { get; }
}
