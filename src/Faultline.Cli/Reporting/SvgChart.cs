using System.Globalization;
using System.Security;
using System.Text;
using Faultline.Cli.Running;

namespace Faultline.Cli.Reporting;

/// <summary>
/// A horizontal bar chart of the results, hand-written SVG 1.1: one group per configuration (workload, threads,
/// churn), one bar per path, each group scaled to its own largest bar (the figures of different workloads differ by
/// orders of magnitude), the value and the ratio to the kernel printed after each bar.
/// </summary>
internal static class SvgChart
{
    private const int Width = 960;
    private const int LabelWidth = 120;
    private const int BarLeft = 140;
    private const int BarMax = 560;
    private const int BarHeight = 16;
    private const int BarGap = 4;
    private const int GroupTitle = 22;
    private const int GroupGap = 14;
    private const int Top = 78;

    private static readonly Dictionary<string, string> Colors = new()
    {
        ["mmap-lock"] = "#d62728",
        ["speculative"] = "#ff7f0e",
        ["vma-lock"] = "#1f77b4",
        ["kernel"] = "#555555",
    };

    /// <summary>The chart as SVG text.</summary>
    public static string Render(MachineInfo machine, IReadOnlyList<BenchResult> results)
    {
        var groups = results.GroupBy(r => (r.Workload, r.Threads, r.Churn)).ToList();
        int height = Top + groups.Sum(g => GroupTitle + g.Count() * (BarHeight + BarGap) + GroupGap) + 20;
        var svg = new StringBuilder();
        svg.AppendLine("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        svg.AppendLine(Invariant($"<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{Width}\" height=\"{height}\" viewBox=\"0 0 {Width} {height}\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">"));
        svg.AppendLine(Invariant($"<rect x=\"0\" y=\"0\" width=\"{Width}\" height=\"{height}\" fill=\"#ffffff\"/>"));
        svg.AppendLine(Text(20, 26, "Faultline bench: Faultline's fault paths against the host kernel", "font-size=\"16\" font-weight=\"bold\""));
        svg.AppendLine(Text(20, 44, $"{machine.Cores} cores, {machine.Cpu}, Linux {machine.Kernel}, {machine.Runtime}, {machine.Date}. Each group is scaled to its largest bar; higher is better.", "fill=\"#444444\""));
        int legendX = 20;
        foreach ((string path, string color) in Colors)
        {
            svg.AppendLine(Invariant($"<rect x=\"{legendX}\" y=\"54\" width=\"12\" height=\"12\" fill=\"{color}\"/>"));
            svg.AppendLine(Text(legendX + 16, 64, path, ""));
            legendX += 110;
        }

        int y = Top;
        foreach (var group in groups)
        {
            BenchResult first = group.First();
            (double _, string unit) = Headline.Of(first);
            string title = $"{first.Workload}, {first.Threads} thread{(first.Threads == 1 ? "" : "s")}{(first.Churn > 0 ? $" + {first.Churn} churn" : "")} ({unit})";
            svg.AppendLine(Text(20, y + 14, title, "font-weight=\"bold\""));
            y += GroupTitle;
            double max = group.Max(r => Headline.Of(r).Value);
            foreach (BenchResult r in group)
            {
                double value = Headline.Of(r).Value;
                double length = max > 0 ? Math.Max(1, value / max * BarMax) : 1;
                string color = Colors.GetValueOrDefault(r.Path, "#999999");
                svg.AppendLine(Text(LabelWidth, y + 12, r.Path, "text-anchor=\"end\""));
                svg.AppendLine(Invariant($"<rect x=\"{BarLeft}\" y=\"{y}\" width=\"{length:0.0}\" height=\"{BarHeight}\" fill=\"{color}\"><title>{Escape($"{r.Workload} {r.Path}: {Headline.Rate(value)} {unit}")}</title></rect>"));
                double? ratio = Headline.VersusKernel(r, results);
                string label = Headline.Short(value) + (ratio is null || r.Path == "kernel" ? "" : Invariant($"  ({ratio:0.00}x kernel)")) + (r.Verified ? "" : "  VERIFY FAILED");
                svg.AppendLine(Text(BarLeft + (int)length + 6, y + 12, label, r.Verified ? "" : "fill=\"#d62728\""));
                y += BarHeight + BarGap;
            }
            y += GroupGap;
        }
        svg.AppendLine("</svg>");
        return svg.ToString();
    }

    /// <summary>Writes the chart.</summary>
    public static void Write(string file, MachineInfo machine, IReadOnlyList<BenchResult> results) =>
        File.WriteAllText(file, Render(machine, results));

    private static string Text(int x, int y, string text, string attributes) =>
        Invariant($"<text x=\"{x}\" y=\"{y}\" {attributes}>{Escape(text)}</text>");

    private static string Escape(string text) => SecurityElement.Escape(text) ?? "";

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
