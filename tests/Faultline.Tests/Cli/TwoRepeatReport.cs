using Faultline.Cli.Paths;
using Faultline.Cli.Reporting;
using Faultline.Cli.Running;
using Faultline.Cli.Workloads;

namespace Faultline.Tests.Cli;

/// <summary>
/// One short real measurement shared by the report tests: page_fault1 on vma-lock and on the kernel, mixed 1+1 on
/// speculative, in two repeats, with floors over small regions.
/// </summary>
public sealed class TwoRepeatReport
{
    private static readonly TimeSpan Duration = TimeSpan.FromMilliseconds(50);

    /// <summary>Runs the measurement.</summary>
    public TwoRepeatReport()
    {
        IWorkload pageFault = WorkloadCatalog.ParseList("page_fault1").Single();
        IWorkload mixed = WorkloadCatalog.ParseList("mixed").Single();
        var results = new List<BenchResult>();
        var floors = new List<FloorResult>();
        MachineInfo machine = MachineInfo.Collect();
        using var floorProbe = new FloorProbe(new Random(7), machine.ReadFaultMapsZeroPage, 4L << 20, 8L << 20);
        for (int repeat = 0; repeat < 2; repeat++)
        {
            floors.AddRange(floorProbe.Measure(repeat));
            results.Add(BenchRunner.Run(pageFault, PathKind.VmaLock, new RunShape(1, 0), Duration) with { Repeat = repeat });
            results.Add(BenchRunner.Run(pageFault, PathKind.Kernel, new RunShape(1, 0), Duration) with { Repeat = repeat, Order = 1 });
            results.Add(BenchRunner.Run(mixed, PathKind.Speculative, new RunShape(1, 1), Duration) with { Repeat = repeat, Order = 2 });
        }
        Report = BenchReport.Create(machine, GitCommit.Current(), 2, Duration.TotalSeconds, results, floors);
    }

    internal BenchReport Report { get; }
}
