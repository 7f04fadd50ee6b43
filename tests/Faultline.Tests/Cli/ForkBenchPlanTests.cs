using Faultline.Cli.Commands;
using Faultline.Cli.Paths;
using Faultline.Cli.Workloads;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>How <c>bench</c> plans the fork workloads: only when named, one thread for fork, the region from --fork-mib.</summary>
public class ForkBenchPlanTests
{
    [Fact]
    public void TheSuiteAndTheDefaultWorkloadListLeaveTheForkWorkloadsOut()
    {
        Assert.DoesNotContain(BenchPlan.Suite(), c => c.Workload is ForkWorkload or ForkChurnWorkload);
        Assert.DoesNotContain(BenchPlan.Build(null, "1,2", null), c => c.Workload is ForkWorkload or ForkChurnWorkload);
        Assert.Contains(BenchPlan.Build("all", null, null), c => c.Workload is ForkWorkload);
    }

    [Fact]
    public void ForkRunsOneThreadAndForkChurnEveryThreadAndChurnCountOverTheGivenRegion()
    {
        IReadOnlyList<BenchConfig> configs = BenchPlan.Build("fork,fork-churn", "1,2", "0,1", forkMib: 8);

        BenchConfig fork = Assert.Single(configs, c => c.Workload.Name == "fork");
        Assert.Equal((1, 0), (fork.Shape.Threads, fork.Shape.Churn));
        Assert.Equal(8, ((ForkWorkload)fork.Workload).RegionMib);
        List<BenchConfig> churn = configs.Where(c => c.Workload.Name == "fork-churn").ToList();
        Assert.Equal([(1, 0), (1, 1), (2, 0), (2, 1)], churn.Select(c => (c.Shape.Threads, c.Shape.Churn)));
        Assert.All(churn, c => Assert.Equal(8, ((ForkChurnWorkload)c.Workload).RegionMib));
        Assert.Equal(2 * (8L << 20), fork.Workload.TouchedBytes(fork.Shape));
    }

    [Fact]
    public void TheRegionMustBeAtLeastOneMibAndAtMostTheLimit()
    {
        Assert.Throws<ArgumentException>(() => BenchPlan.Build("fork", null, null, forkMib: 0));
        Assert.Throws<ArgumentException>(() => BenchPlan.Build("fork", null, null, forkMib: BenchPlan.MaxForkMib + 1));
        Assert.Equal(256, ((ForkWorkload)BenchPlan.Build("fork", null, null).Single().Workload).RegionMib);
    }

    [Fact]
    public void ForkChurnHasNoKernelRowAndSaysSoInOneLine()
    {
        IReadOnlyList<BenchConfig> configs = BenchPlan.Build("fork-churn,page_fault1", "2", "1");

        (IReadOnlyList<BenchCase> cases, IReadOnlyList<string> skipped) = BenchPlan.Cases(configs, PathNames.All);

        Assert.DoesNotContain(cases, c => c.Config.Workload.Name == "fork-churn" && c.Path == PathKind.Kernel);
        Assert.Equal(3, cases.Count(c => c.Config.Workload.Name == "fork-churn"));
        Assert.Equal(4, cases.Count(c => c.Config.Workload.Name == "page_fault1"));
        string line = Assert.Single(skipped);
        Assert.StartsWith("fork-churn", line);
        Assert.DoesNotContain('\n', line);
    }
}
