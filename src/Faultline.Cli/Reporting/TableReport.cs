using System.Globalization;
using System.Text;
using Faultline.Cli.Running;
using Spectre.Console;

namespace Faultline.Cli.Reporting;

/// <summary>The results as a console table (Spectre.Console) or as Markdown.</summary>
internal static class TableReport
{
    private static readonly string[] Headers =
        ["workload", "path", "thr", "churn", "ops/s", "faults/s", "ns/fault", "churn ops/s", "vs kernel", "verified"];

    /// <summary>Prints the table.</summary>
    public static void Print(IAnsiConsole console, IReadOnlyList<BenchResult> results)
    {
        var table = new Table().Border(TableBorder.Rounded);
        foreach (string h in Headers)
        {
            var column = new TableColumn(h);
            if (h is not ("workload" or "path" or "verified"))
            {
                column.RightAligned();
            }
            table.AddColumn(column);
        }
        foreach (BenchResult r in results)
        {
            string[] cells = Cells(r, results);
            cells[^1] = r.Verified ? "[green]ok[/]" : "[red]FAILED[/]";
            table.AddRow(cells.Select((c, i) => i == cells.Length - 1 ? c : Markup.Escape(c)).ToArray());
        }
        console.Write(table);
    }

    /// <summary>The table as GitHub Markdown.</summary>
    public static string Markdown(IReadOnlyList<BenchResult> results)
    {
        var text = new StringBuilder();
        text.Append("| ").AppendJoin(" | ", Headers).AppendLine(" |");
        text.Append('|').AppendJoin("", Headers.Select(h => h is "workload" or "path" or "verified" ? "---|" : "---:|")).AppendLine();
        foreach (BenchResult r in results)
        {
            text.Append("| ").AppendJoin(" | ", Cells(r, results)).AppendLine(" |");
        }
        return text.ToString();
    }

    private static string[] Cells(BenchResult r, IReadOnlyList<BenchResult> all)
    {
        double? ratio = Headline.VersusKernel(r, all);
        return
        [
            r.Workload,
            r.Path,
            r.Threads.ToString(CultureInfo.InvariantCulture),
            r.Churn.ToString(CultureInfo.InvariantCulture),
            Headline.Rate(r.OpsPerSec),
            r.Faults == 0 ? "-" : Headline.Rate(r.FaultsPerSec),
            r.Faults == 0 ? "-" : r.NsPerFault.ToString("0", CultureInfo.InvariantCulture),
            r.Churn == 0 ? "-" : Headline.Rate(r.ChurnOpsPerSec),
            ratio is null ? "-" : ratio.Value.ToString("0.00", CultureInfo.InvariantCulture) + "x",
            r.Verified ? "ok" : "FAILED",
        ];
    }
}
