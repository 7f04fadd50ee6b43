using System.Text.Json;
using Faultline.Cli.Reporting;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>
/// `faultline bench --workload malloc`: short real runs on the three Faultline paths and on the kernel reference
/// program, every page the touching and the mutating threads wrote read back (moved pages at their new address),
/// rendered to the JSON fields, the ratios and the Markdown.
/// </summary>
public class MallocReportTests(MallocReport measured) : IClassFixture<MallocReport>
{
    [Fact]
    public void EveryPathVerifiesItsTouchersFaultsAndItsMutatorsSystemCalls()
    {
        using JsonDocument json = JsonDocument.Parse(JsonReport.Render(measured.Report));
        JsonElement[] rows = json.RootElement.GetProperty("results").EnumerateArray().ToArray();

        Assert.Equal(["mmap-lock", "speculative", "vma-lock", "kernel"], rows.Select(r => r.GetProperty("path").GetString()));
        foreach (JsonElement row in rows)
        {
            Assert.True(row.GetProperty("verified").GetBoolean(), row.TryGetProperty("error", out JsonElement e) ? e.GetString() : "");
            Assert.Equal("malloc", row.GetProperty("workload").GetString());
            Assert.Equal((1, 2), (row.GetProperty("threads").GetInt32(), row.GetProperty("churn").GetInt32()));
            Assert.True(row.GetProperty("faults").GetInt64() > 0);
            Assert.True(row.GetProperty("faults_per_sec").GetDouble() > 0);
            Assert.True(row.GetProperty("churn_ops_per_sec").GetDouble() > 0);
            Assert.True(row.GetProperty("ns_per_fault").GetDouble() >= 0);
        }
        foreach (JsonElement row in rows.Where(r => r.GetProperty("path").GetString() != "kernel"))
        {
            // Each mutator round maps and unmaps its block; the touchers map and unmap their regions.
            JsonElement counters = row.GetProperty("counters");
            Assert.True(counters.GetProperty("mmap").GetInt64() > 0);
            Assert.True(counters.GetProperty("munmap").GetInt64() > 0);
        }

        string[] ratios = json.RootElement.GetProperty("ratio_summary").EnumerateArray().Select(r => r.GetProperty("name").GetString()!).ToArray();
        Assert.Contains("vma-lock ÷ kernel", ratios);
        Assert.Contains("speculative ÷ mmap-lock", ratios);
        Assert.Contains("vma-lock churn ops/s ÷ kernel", ratios);
    }

    [Fact]
    public void TheMarkdownSaysWhatTheMallocFiguresAre()
    {
        string markdown = TableReport.Markdown(measured.Report);

        Assert.Contains("| malloc | kernel | 1 | 2 |", markdown);
        Assert.Contains("| mmap-lock churn ops/s ÷ kernel | malloc | 1 | 2 |", markdown);
        Assert.Contains("malloc: faults/s and ns/fault are the touching threads'", markdown);
        Assert.Contains("Native/malloc_bench.c", markdown);
    }
}
