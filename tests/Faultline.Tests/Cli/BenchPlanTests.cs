using Faultline.Cli.Commands;
using Faultline.Cli.Paths;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>What the default suite runs and what its shared warm-up pass covers.</summary>
public class BenchPlanTests
{
    [Fact]
    public void WarmUpRunsEveryWorkloadOnEveryPathOnce()
    {
        List<BenchCase> cases = BenchPlan.Suite().SelectMany(c => PathNames.All.Select(p => new BenchCase(c, p))).ToList();

        IReadOnlyList<BenchCase> warmUp = BenchPlan.WarmUpCases(cases);

        var pairs = cases.Select(c => (c.Config.Workload.Name, c.Path)).Distinct().ToList();
        Assert.Equal(pairs.Count, warmUp.Count);
        Assert.Equal(pairs.Order(), warmUp.Select(c => (c.Config.Workload.Name, c.Path)).Order());
        Assert.True(warmUp.Count < cases.Count);
    }

    [Fact]
    public void SuiteHasTheBaselineOfTheChurnRatio()
    {
        IReadOnlyList<BenchConfig> suite = BenchPlan.Suite();

        Assert.Contains(suite, c => c.Workload.Name == "mixed" && c.Shape.Threads == 1 && c.Shape.Churn == 1);
        Assert.Contains(suite, c => c.Workload.Name == "mixed" && c.Shape.Threads == 1 && c.Shape.Churn == 0);
    }
}
