using System.Globalization;
using System.Text;
using Faultline.Cli.Statistics;
using ScottPlot;
using ScottPlot.Plottables;
using SkiaSharp;

namespace Faultline.Cli.Reporting;

/// <summary>
/// The chart of a report (ScottPlot), three panels stacked: CPU ns per fault of Faultline's paths with the zeroing
/// floors as lines; each path ÷ the kernel; the scalable paths ÷ mmap-lock and with ÷ without churn. Bars are medians,
/// whiskers the min–max over the repeats; ratios are computed within each repeat.
/// </summary>
internal static class ChartReport
{
    private const int Width = 1200;
    private const int Height = 1500;

    private static readonly (string Path, string Color)[] PathColors =
    [
        ("mmap-lock", "#d62728"),
        ("speculative", "#ff7f0e"),
        ("vma-lock", "#1f77b4"),
        ("kernel", "#555555"),
    ];

    /// <summary>Writes the chart as PNG.</summary>
    public static void WritePng(string file, BenchReport report) => Build(report).SavePng(file, Width, Height);

    /// <summary>The chart as SVG text.</summary>
    public static string RenderSvg(BenchReport report)
    {
        using var stream = new MemoryStream();
        // The SVG is complete only once the canvas is disposed.
        using (SKCanvas canvas = SKSvgCanvas.Create(new SKRect(0, 0, Width, Height), stream))
        {
            Build(report).Render(canvas, new PixelRect(0, Width, Height, 0));
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>Writes the chart as SVG.</summary>
    public static void WriteSvg(string file, BenchReport report) => File.WriteAllText(file, RenderSvg(report));

    private static Multiplot Build(BenchReport report)
    {
        BundledFontResolver.Install();
        var multiplot = new Multiplot();
        multiplot.AddPlots(3);
        Plot[] panels = multiplot.GetPlots();
        NsPerFaultPanel(panels[0], report);
        RatioPanel(panels[1], report.RatioSummary.Where(r => r.Kind == RatioKind.VersusKernel).ToList());
        RatioPanel(panels[2], report.RatioSummary.Where(r => r.Kind is RatioKind.VersusMmapLock or RatioKind.WithVersusWithoutChurn).ToList());
        panels[0].Title($"Faultline bench: medians of {report.Repeats} repeat(s) × {report.SecondsPerRun.ToString(CultureInfo.InvariantCulture)} s, whiskers min–max\n" +
            $"{report.Machine.Cores} cores, {report.Machine.Cpu}, {report.Machine.Date}, commit {report.Commit[..Math.Min(12, report.Commit.Length)]}\n" +
            "CPU ns per fault of the faulting threads (lower is better), floors dashed");
        panels[1].Title($"÷ kernel, {report.Machine.KernelLabel}\nfaults/s (ops/s for mmap1, ebizzy) over the kernel's, same repeat");
        panels[2].Title("÷ mmap-lock (same figure) and mixed with ÷ without churn (faults/s), same repeat");
        return multiplot;
    }

    private static void NsPerFaultPanel(Plot plot, BenchReport report)
    {
        List<CaseSummary> rows = report.Summary.Where(r => r.Path != "kernel" && r.FaultsPerSec.Max > 0).ToList();
        List<string> groups = rows.Select(GroupLabel).Distinct().ToList();
        foreach ((string path, string color) in PathColors.Where(p => p.Path != "kernel"))
        {
            List<(string Group, Spread Value)> series = rows.Where(r => r.Path == path).Select(r => (GroupLabel(r), r.NsPerFault)).ToList();
            AddSeries(plot, groups, series, path, Color.FromHex(color), PathColors.Length - 1);
        }
        foreach (FloorSummary floor in report.FloorSummary.Where(f => f.Name.StartsWith("zero", StringComparison.Ordinal)))
        {
            HorizontalLine line = plot.Add.HorizontalLine(floor.NsPerOp.Median, 1.5f, Colors.Black, LinePattern.Dashed);
            line.LegendText = Invariant($"floor: {floor.Name} ({floor.NsPerOp.Median:0} ns)");
        }
        plot.YLabel("ns per fault");
        Finish(plot, groups);
    }

    private static void RatioPanel(Plot plot, IReadOnlyList<RatioSummary> ratios)
    {
        List<string> groups = ratios.Select(GroupLabel).Distinct().ToList();
        foreach (string name in ratios.Select(r => r.Name).Distinct())
        {
            Color pathColor = Color.FromHex(PathColors.FirstOrDefault(p => name.StartsWith(p.Path, StringComparison.Ordinal)).Color ?? "#999999");
            // A path's churn ratio is its lighter shade, so it reads apart from the same path's ÷ mmap-lock bar.
            Color color = name.Contains("churn", StringComparison.Ordinal) ? pathColor.Lighten(0.45) : pathColor;
            List<(string Group, Spread Value)> series = ratios.Where(r => r.Name == name).Select(r => (GroupLabel(r), r.Value)).ToList();
            AddSeries(plot, groups, series, name, color, ratios.Select(r => r.Name).Distinct().Count());
        }
        plot.Add.HorizontalLine(1, 1, Colors.Black, LinePattern.Solid);
        plot.YLabel("ratio");
        Finish(plot, groups);
    }

    // One bar per group the series has a value for, side by side with the other series of the panel.
    private static void AddSeries(Plot plot, List<string> groups, List<(string Group, Spread Value)> series, string name, Color color, int seriesCount)
    {
        if (series.Count == 0)
        {
            return;
        }
        int index = plot.GetPlottables().OfType<BarPlot>().Count();
        double width = 0.8 / seriesCount;
        var bars = series.Select(s => new Bar
        {
            Position = groups.IndexOf(s.Group) - 0.4 + width * (index + 0.5),
            Value = s.Value.Median,
            Size = width * 0.9,
            FillColor = color,
        }).ToList();
        BarPlot barPlot = plot.Add.Bars(bars);
        barPlot.LegendText = name;
        ErrorBar whiskers = plot.Add.ErrorBar(bars.Select(b => b.Position).ToList(), bars.Select(b => b.Value).ToList(), new double[bars.Count]);
        whiskers.YErrorPositive = series.Select(s => s.Value.Max - s.Value.Median).ToList();
        whiskers.YErrorNegative = series.Select(s => s.Value.Median - s.Value.Min).ToList();
        whiskers.Color = Colors.Black;
    }

    private static void Finish(Plot plot, List<string> groups)
    {
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, groups.Count).Select(i => (double)i).ToArray(), groups.ToArray());
        plot.Axes.Margins(bottom: 0);
        plot.ShowLegend(Edge.Right);
    }

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    private static string GroupLabel(CaseSummary r) => GroupLabel(r.Workload, r.Threads, r.Churn);

    private static string GroupLabel(RatioSummary r) => GroupLabel(r.Workload, r.Threads, r.Churn);

    private static string GroupLabel(string workload, int threads, int churn) =>
        churn > 0 ? $"{workload} {threads}+{churn}" : $"{workload} t={threads}";
}
