using Faultline.Cli.Paths;
using Faultline.Cli.Replay;
using Faultline.Cli.Running;
using Faultline.Cli.Workloads;
using Faultline.Tests.Conformance;
using Xunit;

namespace Faultline.Tests.Replay;

/// <summary>
/// <c>bench --workload replay:TRACE</c>: the written trace replayed over and over on a Faultline path (every call
/// compared, every touch checked) and on the kernel (libc at relocated addresses), each with two workers.
/// </summary>
[Collection(HostRegionCollection.Name)]
public sealed class ReplayWorkloadTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("faultline-replay-bench-test").FullName;

    [Theory]
    [InlineData("vma-lock")]
    [InlineData("speculative")]
    [InlineData("kernel")]
    public void TheTraceIsReplayedRepeatedlyAndEveryResultChecked(string pathName)
    {
        PathKind path = Assert.Single(PathNames.ParseList(pathName));
        string file = Path.Combine(_folder, "sample.trace");
        TraceFile.Write(file, SampleTrace.Build(SampleTrace.Lines));
        IWorkload workload = Assert.Single(WorkloadCatalog.ParseList("replay:" + file));

        BenchResult result = BenchRunner.Run(workload, path, new RunShape(workload.DefaultThreads, 0), TimeSpan.FromMilliseconds(200));

        Assert.True(result.Verified, result.Error);
        Assert.Equal("replay:sample.trace", result.Workload);
        // No faults recorded: each iteration touches the two pages of the anonymous mapping.
        Assert.True(result.Faults >= 2 && result.Faults % 2 == 0, $"{result.Faults} touches");
        Assert.True(result.Ops > result.Faults);
    }

    [Fact]
    public void AMissingTraceIsAnOptionError() =>
        Assert.Contains("--workload replay:", Assert.Throws<ArgumentException>(() => WorkloadCatalog.ParseList("replay:/nonexistent/x.trace")).Message);

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
