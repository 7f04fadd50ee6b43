using System.Text.Json;
using System.Xml.Linq;
using Faultline.Cli.Paths;
using Faultline.Cli.Reporting;
using Faultline.Cli.Running;
using Faultline.Cli.Workloads;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>
/// The `faultline bench` contract others rely on: short real runs of a workload on a Faultline path and on the host
/// kernel, verified, rendered to the JSON fields the issue names and to an SVG that parses as XML.
/// </summary>
[Collection(Conformance.HostRegionCollection.Name)]
public class BenchReportTests
{
    [Fact]
    public void RunsVerifyAndReportTheContractedFields()
    {
        IWorkload pageFault = WorkloadCatalog.ParseList("page_fault1").Single();
        IWorkload mixed = WorkloadCatalog.ParseList("mixed").Single();
        TimeSpan duration = TimeSpan.FromMilliseconds(300);
        var results = new List<BenchResult>
        {
            BenchRunner.Run(pageFault, PathKind.VmaLock, new RunShape(1, 0), duration),
            BenchRunner.Run(pageFault, PathKind.Kernel, new RunShape(1, 0), duration),
            BenchRunner.Run(mixed, PathKind.Speculative, new RunShape(1, 1), duration),
        };

        using JsonDocument json = JsonDocument.Parse(JsonReport.Render(MachineInfo.Collect(), results));
        Assert.True(json.RootElement.GetProperty("machine").GetProperty("cores").GetInt32() > 0);
        JsonElement[] rows = json.RootElement.GetProperty("results").EnumerateArray().ToArray();
        Assert.Equal(3, rows.Length);
        foreach (JsonElement row in rows)
        {
            foreach (string field in new[] { "workload", "path", "threads", "churn", "seconds", "ops", "ops_per_sec", "faults",
                         "faults_per_sec", "ns_per_fault", "churn_ops_per_sec", "counters" })
            {
                Assert.True(row.TryGetProperty(field, out _), $"missing {field}");
            }
            Assert.True(row.GetProperty("verified").GetBoolean());
            Assert.True(row.GetProperty("faults").GetInt64() > 0);
        }
        Assert.Equal("vma-lock", rows[0].GetProperty("path").GetString());
        Assert.True(rows[0].GetProperty("counters").GetProperty("VMA_LOCK_SUCCESS").GetInt64() > 0);
        Assert.Equal("kernel", rows[1].GetProperty("path").GetString());
        Assert.True(rows[1].GetProperty("counters").GetProperty("ru_minflt").GetInt64() > 0);
        Assert.True(rows[2].GetProperty("churn_ops_per_sec").GetDouble() > 0);

        XDocument svg = XDocument.Parse(SvgChart.Render(MachineInfo.Collect(), results));
        Assert.Equal("svg", svg.Root!.Name.LocalName);
    }
}
