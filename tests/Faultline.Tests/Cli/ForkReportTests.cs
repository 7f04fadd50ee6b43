using System.Text.Json;
using Faultline.Cli.Reporting;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>
/// `faultline bench --workload fork,fork-churn`: short real runs on a Faultline path and on the host kernel, every
/// side's contents verified in the run (the child and the parent each read the pre-fork data and their own writes,
/// never the other's), rendered to the JSON fields and the fork table.
/// </summary>
public class ForkReportTests(ForkReport measured) : IClassFixture<ForkReport>
{
    // FOLIO_BATCH_SIZE (PAGEVEC_SIZE before it): the folios one CPU's LRU cache holds, each with an extra reference.
    private const long HostLruBatch = 31;

    [Fact]
    public void EveryRunVerifiesAndReportsForkLatencyAndCpuPerCopyOnWriteFault()
    {
        using JsonDocument json = JsonDocument.Parse(JsonReport.Render(measured.Report));
        JsonElement[] rows = json.RootElement.GetProperty("results").EnumerateArray().ToArray();

        Assert.Equal(6, rows.Length);
        foreach (JsonElement row in rows)
        {
            Assert.True(row.GetProperty("verified").GetBoolean(), row.TryGetProperty("error", out JsonElement e) ? e.GetString() : "");
            Assert.True(row.GetProperty("fork_ms").GetDouble() > 0);
            Assert.True(row.GetProperty("forks").GetInt64() > 0);
            Assert.True(row.GetProperty("faults_per_sec").GetDouble() > 0);
            Assert.True(row.GetProperty("faults").GetInt64() >= 1024);
            // getrusage advances with the scheduler tick, so a loop over 4 MiB may read as no CPU time at all.
            Assert.True(row.GetProperty("ns_per_fault").GetDouble() >= 0);
        }
        foreach (JsonElement row in rows.Where(r => r.GetProperty("workload").GetString() == "fork"))
        {
            Assert.True(row.GetProperty("parent_ns_per_fault").GetDouble() >= 0);
            Assert.True(row.GetProperty("parent_faults").GetInt64() >= 1024);
            if (row.TryGetProperty("parent_copies", out JsonElement copies))
            {
                // The child copied every page before it went, so each page is the parent's alone and is reused, as on
                // Linux (wp_can_reuse_anon_folio). The host kernel copies a page whose folio still holds an extra
                // reference, e.g. in the per-CPU LRU batch of the CPU the child ran on (lru_add_drain drains only the
                // faulting CPU's), so on a busy host its row may show a few copies, at most a folio batch (31) per
                // CPU; Faultline's rows never.
                if (row.GetProperty("path").GetString() == "kernel")
                {
                    Assert.InRange(copies.GetInt64(), 0, HostLruBatch * Environment.ProcessorCount);
                }
                else
                {
                    Assert.Equal(0, copies.GetInt64());
                }
            }
        }
        JsonElement[] churn = rows.Where(r => r.GetProperty("workload").GetString() == "fork-churn").ToArray();
        Assert.All(churn, r => Assert.True(r.GetProperty("churn_ops_per_sec").GetDouble() > 0));
        Assert.All(churn, r => Assert.False(r.TryGetProperty("parent_ns_per_fault", out _)));
        JsonElement vmaLock = rows.First(r => r.GetProperty("path").GetString() == "vma-lock");
        Assert.True(vmaLock.GetProperty("counters").GetProperty("cow_reuse").GetInt64() >= 1024);
        Assert.Equal(vmaLock.GetProperty("faults").GetInt64(), vmaLock.GetProperty("counters").GetProperty("child.cow_fault").GetInt64());
        Assert.Equal(0, vmaLock.GetProperty("parent_copies").GetInt64());
        Assert.All(churn, r => Assert.True(r.GetProperty("counters").GetProperty("cow_fault").GetInt64() >= 1024));

        JsonElement[] ratios = json.RootElement.GetProperty("ratio_summary").EnumerateArray().ToArray();
        Assert.Contains(ratios, r => r.GetProperty("name").GetString() == "vma-lock fork ms ÷ kernel");
        Assert.Contains(ratios, r => r.GetProperty("name").GetString() == "vma-lock ns/fault ÷ kernel");
        JsonElement summary = json.RootElement.GetProperty("summary").EnumerateArray()
            .Single(r => r.GetProperty("path").GetString() == "kernel");
        Assert.True(summary.GetProperty("fork_ms").GetProperty("median").GetDouble() > 0);
    }

    [Fact]
    public void TheForkTableAndTheSkippedKernelRowAreInTheMarkdown()
    {
        string markdown = TableReport.Markdown(measured.Report);

        Assert.Contains("| workload | path | thr | churn | fork ms | ns/fault (copies) |", markdown);
        Assert.Contains("| fork | kernel | 1 | 0 |", markdown);
        Assert.Contains("| fork-churn | mmap-lock | 2 | 1 |", markdown);
        Assert.Contains("* Skipped: fork-churn: no kernel row", markdown);
    }
}
