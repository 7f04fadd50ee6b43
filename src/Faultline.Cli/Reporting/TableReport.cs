using System.Globalization;
using System.Text;
using Faultline.Cli.Statistics;
using Spectre.Console;

namespace Faultline.Cli.Reporting;

/// <summary>
/// The report as console tables (Spectre.Console) or as Markdown: the cases, the fork figures (when fork workloads
/// ran), the ratios between paths and with ÷ without churn, the floors, and the lines a reader needs to interpret
/// them (repeats, medians, the kernel measured, what was skipped and why).
/// </summary>
internal static class TableReport
{
    private static readonly string[] CaseHeaders =
        ["workload", "path", "thr", "churn", "ops/s", "faults/s", "ns/fault", "churn ops/s", "÷ kernel", "verified"];

    private static readonly string[] ForkHeaders =
        ["workload", "path", "thr", "churn", "fork ms", "ns/fault (copies)", "fork ms ÷ kernel", "ns/fault ÷ kernel",
            "parent ns/fault", "parent faults that copied"];

    private static readonly string[] RatioHeaders = ["ratio", "workload", "thr", "churn", "median [min–max]"];

    private static readonly string[] FloorHeaders = ["floor", "ns/op median [min–max]"];

    /// <summary>Prints the tables and the reading notes.</summary>
    public static void Print(IAnsiConsole console, BenchReport report)
    {
        console.Write(Table(CaseHeaders, report.Summary.Select(r => CaseCells(r, report)), colorVerified: true));
        if (ForkRows(report).Any())
        {
            console.Write(Table(ForkHeaders, ForkRows(report).Select(r => ForkCells(r, report)), colorVerified: false));
        }
        console.Write(Table(RatioHeaders, OtherRatios(report).Select(RatioCells), colorVerified: false));
        console.Write(Table(FloorHeaders, report.FloorSummary.Select(FloorCells), colorVerified: false));
        foreach (string line in Notes(report))
        {
            console.MarkupLine(Markup.Escape(line));
        }
    }

    /// <summary>The same tables and notes as GitHub Markdown.</summary>
    public static string Markdown(BenchReport report)
    {
        var text = new StringBuilder();
        AppendMarkdown(text, CaseHeaders, report.Summary.Select(r => CaseCells(r, report)));
        if (ForkRows(report).Any())
        {
            AppendMarkdown(text, ForkHeaders, ForkRows(report).Select(r => ForkCells(r, report)));
        }
        AppendMarkdown(text, RatioHeaders, OtherRatios(report).Select(RatioCells));
        AppendMarkdown(text, FloorHeaders, report.FloorSummary.Select(FloorCells));
        foreach (string line in Notes(report))
        {
            text.Append("* ").AppendLine(line);
        }
        return text.ToString();
    }

    /// <summary>The lines that say what the figures are.</summary>
    public static IReadOnlyList<string> Notes(BenchReport report)
    {
        var notes = new List<string>
        {
            $"Figures are medians [min–max] of {report.Repeats} repeat(s) of {report.SecondsPerRun.ToString(CultureInfo.InvariantCulture)} s per run, cases shuffled in each repeat; ratios are computed within each repeat, then summarized.",
            $"÷ kernel: against {report.Machine.KernelLabel}; faults/s (ops/s for mmap1 and ebizzy) over the kernel row of the same repeat.",
        };
        if (ForkRows(report).Any())
        {
            notes.Add("fork, fork-churn: fork ms is one fork call (Faultline: AddressSpace.Fork; kernel: fork() in Native/fork_bench.c); " +
                "ns/fault and faults/s cover the copy-on-write write loops only, each fault copying 4 KiB (fork: the child's loop; " +
                "fork-churn: the parent's threads with the child alive); parent ns/fault: fork's parent writing every page after the " +
                "child went, its faults copying or reusing the page as the last column says.");
        }
        if (report.Summary.Any(r => r.Workload == "malloc"))
        {
            notes.Add("malloc: faults/s and ns/fault are the touching threads' (first-touch faults of their 128 MiB regions); churn ops/s " +
                "are the mutating threads' brk, mmap, mremap, madvise and munmap calls; the kernel row runs Native/malloc_bench.c " +
                "(the same threads and script on the real system calls, one brk heap under a mutex).");
        }
        notes.AddRange(report.Skipped.Select(s => $"Skipped: {s}."));
        notes.Add($"Machine: {report.Machine.Cores} cores, {report.Machine.Cpu}, {report.Machine.Runtime}, load at start {report.Machine.LoadAverage}; commit {report.Commit}.");
        return notes;
    }

    private static IEnumerable<RatioSummary> OtherRatios(BenchReport report) =>
        report.RatioSummary.Where(r => r.Kind is RatioKind.VersusMmapLock or RatioKind.WithVersusWithoutChurn or RatioKind.ChurnOpsVersusKernel);

    private static IEnumerable<CaseSummary> ForkRows(BenchReport report) => report.Summary.Where(r => r.ForkMs is not null);

    private static Table Table(string[] headers, IEnumerable<string[]> rows, bool colorVerified)
    {
        var table = new Table().Border(TableBorder.Rounded);
        foreach (string h in headers)
        {
            var column = new TableColumn(Markup.Escape(h));
            if (h is not ("workload" or "path" or "verified" or "ratio" or "floor"))
            {
                column.RightAligned();
            }
            table.AddColumn(column);
        }
        foreach (string[] cells in rows)
        {
            string[] markup = cells.Select(Markup.Escape).ToArray();
            if (colorVerified)
            {
                markup[^1] = cells[^1] == "ok" ? "[green]ok[/]" : "[red]FAILED[/]";
            }
            table.AddRow(markup);
        }
        return table;
    }

    private static void AppendMarkdown(StringBuilder text, string[] headers, IEnumerable<string[]> rows)
    {
        text.Append("| ").AppendJoin(" | ", headers).AppendLine(" |");
        text.Append('|').AppendJoin("", headers.Select(h => h is "workload" or "path" or "verified" or "ratio" or "floor" ? "---|" : "---:|")).AppendLine();
        foreach (string[] cells in rows)
        {
            text.Append("| ").AppendJoin(" | ", cells).AppendLine(" |");
        }
        text.AppendLine();
    }

    private static string[] CaseCells(CaseSummary r, BenchReport report)
    {
        RatioSummary? versusKernel = report.RatioOf(r, RatioKind.VersusKernel);
        bool faults = r.FaultsPerSec.Max > 0;
        return
        [
            r.Workload,
            r.Path,
            Integer(r.Threads),
            Integer(r.Churn),
            SpreadText.Rate(r.OpsPerSec),
            faults ? SpreadText.Rate(r.FaultsPerSec) : "-",
            faults ? SpreadText.Nanoseconds(r.NsPerFault) : "-",
            r.Churn == 0 ? "-" : SpreadText.Rate(r.ChurnOpsPerSec),
            versusKernel is null ? "-" : SpreadText.Ratio(versusKernel.Value),
            r.Verified ? "ok" : "FAILED",
        ];
    }

    private static string[] ForkCells(CaseSummary r, BenchReport report)
    {
        RatioSummary? fork = report.RatioOf(r, RatioKind.ForkLatencyVersusKernel);
        RatioSummary? perFault = report.RatioOf(r, RatioKind.NsPerFaultVersusKernel);
        return
        [
            r.Workload,
            r.Path,
            Integer(r.Threads),
            Integer(r.Churn),
            r.ForkMs is { } ms ? Milliseconds(ms) : "-",
            SpreadText.Nanoseconds(r.NsPerFault),
            fork is null ? "-" : SpreadText.Ratio(fork.Value),
            perFault is null ? "-" : SpreadText.Ratio(perFault.Value),
            r.ParentNsPerFault is { } parent ? SpreadText.Nanoseconds(parent) : "-",
            r.ParentCopiedShare is { } share ? Invariant($"{share.Median:P0} [{share.Min:P0}–{share.Max:P0}]") : r.ParentNsPerFault is null ? "-" : "unknown",
        ];
    }

    private static string Milliseconds(Spread s) => Invariant($"{s.Median:0.00} [{s.Min:0.00}–{s.Max:0.00}]");

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    private static string[] RatioCells(RatioSummary r) =>
        [r.Name, r.Workload, Integer(r.Threads), Integer(r.Churn), SpreadText.Ratio(r.Value)];

    private static string[] FloorCells(FloorSummary f) => [f.Name, SpreadText.Nanoseconds(f.NsPerOp)];

    private static string Integer(int value) => value.ToString(CultureInfo.InvariantCulture);
}
