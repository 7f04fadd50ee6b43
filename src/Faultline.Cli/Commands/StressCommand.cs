using System.CommandLine;
using System.Globalization;
using Faultline.Cli.Paths;
using Faultline.Cli.Reporting;
using Faultline.Cli.Stress;
using Spectre.Console;

namespace Faultline.Cli.Commands;

/// <summary>
/// <c>faultline stress</c>: a bounded soak of Faultline's fault paths (map/unmap/mprotect churn against faulting Cpus
/// that check every value and every SIGSEGV they expect). Exit code 0, 1 on any mismatch, 2 for an error (bad
/// options; one line on stderr), 3 when workers hang.
/// </summary>
internal static class StressCommand
{
    private static readonly string[] Watched =
    [
        VmCounters.PageFault, VmCounters.AnonymousFault, VmCounters.WriteProtectFault, VmCounters.FaultRaceLost,
        VmCounters.MmapLockFault, VmCounters.VmaLockSuccess, VmCounters.VmaLockAbort, VmCounters.VmaLockRetry,
        VmCounters.VmaLockMiss, VmCounters.SpeculativePageFault, VmCounters.SpeculativeVmaChanged, VmCounters.SpeculativePteLock,
        VmCounters.SpeculativePmdChanged, VmCounters.SpeculativeFallback, VmCounters.TlbFlush, VmCounters.GracePeriod,
    ];

    /// <summary>Builds the command; every option is checked while parsing, before anything runs.</summary>
    public static Command Create()
    {
        var seconds = new Option<double>("--seconds", "-s")
        {
            Description = "Total seconds, shared among the paths, in [0.001, 86400]",
            DefaultValueFactory = _ => 10,
            CustomParser = OptionChecks.Number("--seconds", 0.001, 86400, 10.0),
        };
        var path = new Option<string?>("--path", "-p")
        {
            Description = "Faultline paths, comma list: mmap-lock, speculative, vma-lock, speculative-no-table-alloc, or all " +
                "(default all: the first three; the kernel has no stress run)",
        };
        OptionChecks.Parses(path, text => Paths(text));
        var threads = new Option<int>("--threads", "-t")
        {
            Description = "Faulting threads, in [1, 256]",
            DefaultValueFactory = _ => 2,
            CustomParser = OptionChecks.Number("--threads", 1, 256, 2),
        };
        var churn = new Option<int>("--churn")
        {
            Description = "Churn threads (map/mprotect/unmap), in [0, 256]",
            DefaultValueFactory = _ => 1,
            CustomParser = OptionChecks.Number("--churn", 0, 256, 1),
        };
        var command = new Command("stress", "Bounded soak: map/unmap/mprotect churn against faulting Cpus with stamp checks")
        {
            seconds, path, threads, churn,
        };
        command.SetAction(parse => Execute(parse.GetValue(seconds), Paths(parse.GetValue(path)), parse.GetValue(threads), parse.GetValue(churn)));
        return command;
    }

    // Faultline's paths from --path; "all" means Faultline's three, and the kernel path is refused.
    private static IReadOnlyList<PathKind> Paths(string? text)
    {
        IReadOnlyList<PathKind> paths = PathNames.ParseList(text ?? "mmap-lock,speculative,vma-lock");
        if (text is not null && text.Split(',').Any(p => p.Trim().Equals("all", StringComparison.OrdinalIgnoreCase)))
        {
            paths = paths.Where(p => p != PathKind.Kernel).ToList();
        }
        if (paths.Contains(PathKind.Kernel))
        {
            throw new ArgumentException("stress checks Faultline's paths; the kernel path has no stress run");
        }
        return paths;
    }

    private static int Execute(double seconds, IReadOnlyList<PathKind> paths, int threads, int churn)
    {
        MachineInfo machine = MachineInfo.Collect();
        TimeSpan each = TimeSpan.FromSeconds(seconds / paths.Count);
        AnsiConsole.MarkupLine(Markup.Escape(
            $"faultline stress: {paths.Count} path(s) x {each.TotalSeconds.ToString("0.##", CultureInfo.InvariantCulture)} s, {threads} faulting + {churn} churn threads; {machine.Cores} cores, {machine.Runtime}"));

        var results = new List<StressResult>();
        foreach (PathKind path in paths)
        {
            StressResult r = StressRun.Run(path, threads, churn, each);
            results.Add(r);
            string verdict = r.Mismatches == 0 ? "[green]ok[/]" : $"[red]{r.Mismatches} MISMATCH(ES)[/]";
            AnsiConsole.MarkupLine($"{Markup.Escape($"{r.Path,-12} {r.Iterations,10:N0} iterations {r.Checks,14:N0} checks")} {verdict}");
            foreach (string error in r.Errors)
            {
                AnsiConsole.MarkupLine($"  [red]{Markup.Escape(error)}[/]");
            }
        }

        var table = new Table().Border(TableBorder.Rounded).AddColumn("counter");
        foreach (StressResult r in results)
        {
            table.AddColumn(new TableColumn(r.Path).RightAligned());
        }
        foreach (string name in Watched)
        {
            table.AddRow([name, .. results.Select(r => r.Counters.GetValueOrDefault(name).ToString("N0", CultureInfo.InvariantCulture))]);
        }
        AnsiConsole.Write(table);
        return results.All(r => r.Mismatches == 0) ? 0 : 1;
    }
}
