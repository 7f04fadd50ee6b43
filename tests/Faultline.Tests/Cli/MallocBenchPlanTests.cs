using Faultline.Cli;
using Faultline.Cli.Commands;
using Faultline.Cli.Paths;
using Faultline.Cli.Workloads;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>How <c>bench</c> plans the malloc workload: 2 touching + 2 mutating threads unless told, --churn lists its mutators.</summary>
public class MallocBenchPlanTests
{
    [Fact]
    public void MallocRunsTwoTouchersAndTwoMutatorsUnlessTheListsSayOtherwise()
    {
        BenchConfig config = Assert.Single(BenchPlan.Build("malloc", null, null));
        Assert.Equal((2, 2), (config.Shape.Threads, config.Shape.Churn));

        IReadOnlyList<BenchConfig> scaled = BenchPlan.Build("malloc,mixed", "1,2", "1,2");
        Assert.Equal([(1, 1), (1, 2), (2, 1), (2, 2)],
            scaled.Where(c => c.Workload is MallocWorkload).Select(c => (c.Shape.Threads, c.Shape.Churn)));
        // The other workloads keep their own defaults.
        Assert.Equal([(1, 1)], BenchPlan.Build("mixed", null, null).Select(c => (c.Shape.Threads, c.Shape.Churn)));
        Assert.Equal([(2, 0), (2, 1)], BenchPlan.Build("malloc", null, "0,1").Select(c => (c.Shape.Threads, c.Shape.Churn)));
    }

    [Fact]
    public void MallocRunsOnEveryPathWhereTheCompilerBuildsTheKernelReference()
    {
        (IReadOnlyList<BenchCase> cases, IReadOnlyList<string> skipped) = BenchPlan.Cases(BenchPlan.Build("malloc", null, null), PathNames.All);

        Assert.Null(KernelMallocProgram.Problem);
        Assert.Equal(PathNames.All, cases.Select(c => c.Path));
        Assert.Empty(skipped);
    }

    [Fact]
    public void ChurnIsAcceptedForMallocAndTheErrorNamesIt()
    {
        Assert.Empty(Program.Create().Parse(["bench", "--workload", "malloc", "--threads", "2", "--churn", "1,2"]).Errors);
        var error = new StringWriter();

        Assert.Equal(2, Program.Run(["bench", "--workload", "pft", "--churn", "1"], new StringWriter(), error));
        Assert.Contains("mixed, fork-churn and malloc", error.ToString());
    }
}
