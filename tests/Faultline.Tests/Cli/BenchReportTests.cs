using System.Text.Json;
using System.Xml.Linq;
using Faultline.Cli.Paths;
using Faultline.Cli.Reporting;
using Faultline.Cli.Running;
using Faultline.Cli.Workloads;
using SkiaSharp;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>
/// The `faultline bench` contract others rely on: short real runs of a workload on a Faultline path and on the host
/// kernel in two repeats, verified, rendered to the JSON fields the issue names (every repeat and the summaries), to a
/// PNG that decodes and to an SVG that parses as XML.
/// </summary>
[Collection(Conformance.HostRegionCollection.Name)]
public class BenchReportTests(TwoRepeatReport measured) : IClassFixture<TwoRepeatReport>
{
    [Fact]
    public void RunsVerifyAndReportEveryRepeatAndTheSummary()
    {
        BenchReport report = measured.Report;

        using JsonDocument json = JsonDocument.Parse(JsonReport.Render(report));
        JsonElement root = json.RootElement;
        Assert.True(root.GetProperty("machine").GetProperty("cores").GetInt32() > 0);
        Assert.True(root.GetProperty("machine").TryGetProperty("read_fault_maps_zero_page", out _));
        Assert.False(string.IsNullOrEmpty(root.GetProperty("machine").GetProperty("transparent_huge_pages").GetString()));
        Assert.False(string.IsNullOrEmpty(root.GetProperty("commit").GetString()));
        Assert.Equal(2, root.GetProperty("repeats").GetInt32());

        JsonElement[] rows = root.GetProperty("results").EnumerateArray().ToArray();
        Assert.Equal(6, rows.Length);
        foreach (JsonElement row in rows)
        {
            foreach (string field in new[] { "workload", "path", "threads", "churn", "seconds", "ops", "ops_per_sec", "faults",
                         "faults_per_sec", "ns_per_fault", "churn_ops_per_sec", "counters", "repeat" })
            {
                Assert.True(row.TryGetProperty(field, out _), $"missing {field}");
            }
            Assert.True(row.GetProperty("verified").GetBoolean());
            Assert.True(row.GetProperty("faults").GetInt64() > 0);
        }
        Assert.Equal([0, 0, 0, 1, 1, 1], rows.Select(r => r.GetProperty("repeat").GetInt32()));
        JsonElement vmaLockRow = rows.First(r => r.GetProperty("path").GetString() == "vma-lock");
        Assert.True(vmaLockRow.GetProperty("counters").GetProperty("vma_lock_success").GetInt64() > 0);
        JsonElement kernelRow = rows.First(r => r.GetProperty("path").GetString() == "kernel");
        Assert.True(kernelRow.GetProperty("counters").GetProperty("ru_minflt").GetInt64() > 0);
        Assert.True(rows.First(r => r.GetProperty("churn").GetInt32() == 1).GetProperty("churn_ops_per_sec").GetDouble() > 0);

        JsonElement[] summary = root.GetProperty("summary").EnumerateArray().ToArray();
        Assert.Equal(3, summary.Length);
        foreach (JsonElement row in summary)
        {
            Assert.Equal(2, row.GetProperty("repeats").GetInt32());
            JsonElement faults = row.GetProperty("faults_per_sec");
            Assert.InRange(faults.GetProperty("median").GetDouble(), faults.GetProperty("min").GetDouble(), faults.GetProperty("max").GetDouble());
        }
        JsonElement versusKernel = root.GetProperty("ratio_summary").EnumerateArray()
            .Single(r => r.GetProperty("name").GetString() == "vma-lock ÷ kernel");
        Assert.Equal("versus_kernel", versusKernel.GetProperty("kind").GetString());
        Assert.True(versusKernel.GetProperty("value").GetProperty("median").GetDouble() > 0);
        Assert.Equal(2, root.GetProperty("ratios").EnumerateArray().Count(r => r.GetProperty("kind").GetString() == "versus_kernel"));
        Assert.Equal(14, root.GetProperty("floors").GetArrayLength());
        Assert.Equal(7, root.GetProperty("floor_summary").GetArrayLength());
    }

    [Fact]
    public void ChartFilesParse()
    {
        BenchReport report = measured.Report;
        string png = Path.Combine(Path.GetTempPath(), $"faultline-bench-{Guid.NewGuid():N}.png");
        try
        {
            ChartReport.WritePng(png, report);
            byte[] bytes = File.ReadAllBytes(png);
            Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, bytes[..8]);
            using SKBitmap? image = SKBitmap.Decode(bytes);
            Assert.NotNull(image);
            Assert.True(image.Width > 0 && image.Height > 0);
        }
        finally
        {
            File.Delete(png);
        }

        XDocument svg = XDocument.Parse(ChartReport.RenderSvg(report));
        Assert.Equal("svg", svg.Root!.Name.LocalName);
        Assert.Contains(svg.Descendants(), e => e.Name.LocalName is "path" or "rect");
    }

    // A machine without fonts (a headless server) drew charts without a single label: the tool carries its typeface.
    [Fact]
    public void ChartsDrawTheirLabelsWithTheTypefaceTheToolCarries()
    {
        XDocument svg = XDocument.Parse(ChartReport.RenderSvg(measured.Report));
        Assert.Equal(BundledFontResolver.Family, ScottPlot.Fonts.Default);
        SKTypeface typeface = ScottPlot.Fonts.GetTypeface(ScottPlot.Fonts.Default, bold: true, italic: false);
        Assert.Same(BundledFontResolver.Typeface(bold: true), typeface);
        const string label = "CPU ns per fault ÷ kernel, whiskers min–max";
        Assert.DoesNotContain((ushort)0, typeface.GetGlyphs(label));
        Assert.Contains(svg.Descendants(), e => e.Name.LocalName == "text" && e.Value.Contains("kernel"));
    }
}
