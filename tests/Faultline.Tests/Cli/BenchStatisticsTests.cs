using Faultline.Cli.Reporting;
using Faultline.Cli.Running;
using Faultline.Cli.Statistics;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>The statistics of <c>faultline bench</c>: medians and ranges, ratios within a repeat, the shuffled order.</summary>
public class BenchStatisticsTests
{
    [Fact]
    public void SpreadHasTheMedianAndTheRange()
    {
        Assert.Equal(new Spread(3, 1, 9, 3), Spread.Of([9, 1, 3]));
        Assert.Equal(new Spread(2.5, 1, 9, 4), Spread.Of([9, 1, 2, 3]));
        Assert.Equal(new Spread(7, 7, 7, 1), Spread.Of([7]));
        Assert.Throws<ArgumentException>(() => Spread.Of([]));
    }

    [Fact]
    public void RatiosAreComputedWithinEachRepeatThenSummarized()
    {
        // Within each repeat vma-lock ÷ mmap-lock is 4, 2 and 1: median 2, range 1–4. Dividing the medians (150 / 100)
        // or the extremes (100 / 50, 400 / 150) across repeats would give other figures.
        double[] vmaLock = [400, 100, 150];
        double[] mmapLock = [100, 50, 150];
        double[] kernel = [10, 10, 20];
        var rows = new List<BenchResult>();
        for (int repeat = 0; repeat < 3; repeat++)
        {
            rows.Add(Row("vma-lock", repeat, vmaLock[repeat]));
            rows.Add(Row("mmap-lock", repeat, mmapLock[repeat]));
            rows.Add(Row("kernel", repeat, kernel[repeat]));
        }

        IReadOnlyList<RatioResult> ratios = RatioCalculator.PerRepeat(rows);
        IReadOnlyList<RatioSummary> summary = RatioCalculator.Summarize(ratios);

        RatioSummary versusMmapLock = summary.Single(r => r.Kind == RatioKind.VersusMmapLock);
        Assert.Equal("vma-lock ÷ mmap-lock", versusMmapLock.Name);
        Assert.Equal(new Spread(2, 1, 4, 3), versusMmapLock.Value);
        Assert.Equal(new Spread(10, 7.5, 40, 3), summary.Single(r => r.Name == "vma-lock ÷ kernel").Value);
        Assert.Equal(new Spread(7.5, 5, 10, 3), summary.Single(r => r.Name == "mmap-lock ÷ kernel").Value);
        Assert.DoesNotContain(summary, r => r.Path == "kernel");
        Assert.Equal(3, ratios.Count(r => r.Kind == RatioKind.VersusMmapLock));
    }

    [Fact]
    public void ChurnRatioComparesTheSamePathAndRepeatWithoutChurn()
    {
        BenchResult[] rows =
        [
            Row("vma-lock", 0, 900, workload: "mixed", churn: 1),
            Row("vma-lock", 0, 1000, workload: "mixed", churn: 0),
            Row("vma-lock", 1, 400, workload: "mixed", churn: 1),
            Row("vma-lock", 1, 500, workload: "mixed", churn: 0),
        ];

        RatioSummary churn = RatioCalculator.Summarize(RatioCalculator.PerRepeat(rows))
            .Single(r => r.Kind == RatioKind.WithVersusWithoutChurn);

        Assert.Equal("vma-lock churn 1 ÷ churn 0", churn.Name);
        Assert.Equal(0.8, churn.Value.Min, 9);
        Assert.Equal(0.9, churn.Value.Max, 9);
        Assert.Equal(0.85, churn.Value.Median, 9);
    }

    [Fact]
    public void ForkRatiosCompareLatencyAndCpuPerFaultWithTheKernelOfTheSameRepeat()
    {
        BenchResult[] rows =
        [
            Row("vma-lock", 0, 1000, workload: "fork") with { ForkMs = 2, NsPerFault = 500 },
            Row("kernel", 0, 100, workload: "fork") with { ForkMs = 8, NsPerFault = 10_000 },
            Row("vma-lock", 1, 1000, workload: "fork") with { ForkMs = 6, NsPerFault = 1_000 },
            Row("kernel", 1, 100, workload: "fork") with { ForkMs = 12, NsPerFault = 5_000 },
        ];

        IReadOnlyList<RatioSummary> summary = RatioCalculator.Summarize(RatioCalculator.PerRepeat(rows));

        RatioSummary fork = summary.Single(r => r.Kind == RatioKind.ForkLatencyVersusKernel);
        Assert.Equal("vma-lock fork ms ÷ kernel", fork.Name);
        Assert.Equal(new Spread(0.375, 0.25, 0.5, 2), fork.Value);
        RatioSummary perFault = summary.Single(r => r.Kind == RatioKind.NsPerFaultVersusKernel);
        Assert.Equal("vma-lock ns/fault ÷ kernel", perFault.Name);
        Assert.Equal(new Spread(0.125, 0.05, 0.2, 2), perFault.Value);
        Assert.DoesNotContain(RatioCalculator.PerRepeat([Row("vma-lock", 0, 1000), Row("kernel", 0, 100)]),
            r => r.Kind is RatioKind.ForkLatencyVersusKernel or RatioKind.NsPerFaultVersusKernel);
    }

    [Fact]
    public void ShuffleRunsEveryCaseOncePerRepeatInAReproducibleOrder()
    {
        string[] cases = Enumerable.Range(0, 12).Select(i => $"case {i}").ToArray();

        IReadOnlyList<IReadOnlyList<string>> schedule = RepeatSchedule.Shuffled(cases, 5, new Random(20261204));
        IReadOnlyList<IReadOnlyList<string>> again = RepeatSchedule.Shuffled(cases, 5, new Random(20261204));

        Assert.Equal(5, schedule.Count);
        foreach (IReadOnlyList<string> repeat in schedule)
        {
            Assert.Equal(cases.Order(), repeat.Order());
        }
        Assert.True(schedule.Select(r => string.Join(',', r)).Distinct().Count() > 1, "every repeat had the same order");
        Assert.NotEqual(string.Join(',', cases), string.Join(',', schedule[0]));
        Assert.Equal(schedule.Select(r => r.ToArray()), again.Select(r => r.ToArray()));
    }

    private static BenchResult Row(string path, int repeat, double faultsPerSec, string workload = "page_fault1", int churn = 0) => new()
    {
        Workload = workload,
        Path = path,
        Threads = 1,
        Churn = churn,
        Repeat = repeat,
        Seconds = 1,
        Ops = 1,
        OpsPerSec = 1,
        Faults = (long)faultsPerSec,
        FaultsPerSec = faultsPerSec,
        NsPerFault = 1e9 / faultsPerSec,
        ChurnOpsPerSec = churn,
        Counters = new Dictionary<string, long>(),
        CpuSeconds = 1,
        HostMinorFaults = 0,
        Mismatches = 0,
    };
}
