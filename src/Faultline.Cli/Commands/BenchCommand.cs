using System.CommandLine;
using System.Globalization;
using Faultline.Cli.Paths;
using Faultline.Cli.Reporting;
using Faultline.Cli.Running;
using Spectre.Console;

namespace Faultline.Cli.Commands;

/// <summary>
/// <c>faultline bench</c>: runs workloads on Faultline's fault paths and on the host kernel, side by side, prints a
/// table, writes a JSON report and an SVG chart. Exit code 0, or 1 when any run read back a wrong value (or failed),
/// or 2 for bad options.
/// </summary>
internal static class BenchCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var workload = new Option<string?>("--workload", "-w")
        {
            Description = "Workloads, comma list: page_fault1, mixed, pft, mmap1, ebizzy, or all (default: the suite)",
        };
        var path = new Option<string?>("--path", "-p")
        {
            Description = "Paths, comma list: mmap-lock, speculative, vma-lock, kernel, or all (default all)",
        };
        var threads = new Option<string?>("--threads", "-t")
        {
            Description = "Faulting threads, a number or a comma list for scaling runs, e.g. 1,2,4,8,16 (default 1)",
        };
        var churn = new Option<string?>("--churn")
        {
            Description = "Churn threads of the mixed workload (map/mprotect/unmap loop), number or comma list (default 1)",
        };
        var seconds = new Option<double>("--seconds", "-s")
        {
            Description = "Measured seconds per run (after a short warm-up)",
            DefaultValueFactory = _ => BenchPlan.DefaultSeconds,
        };
        var json = new Option<string>("--json")
        {
            Description = "JSON report file",
            DefaultValueFactory = _ => "bench-results.json",
        };
        var svg = new Option<string>("--svg")
        {
            Description = "SVG bar chart file",
            DefaultValueFactory = _ => "bench-results.svg",
        };
        var markdown = new Option<string?>("--markdown")
        {
            Description = "Also write the table as Markdown to this file",
        };
        var command = new Command("bench", "Measure page-fault and mmap throughput of Faultline's fault paths against the host kernel")
        {
            workload, path, threads, churn, seconds, json, svg, markdown,
        };
        command.SetAction(parse => Execute(
            parse.GetValue(workload), parse.GetValue(path), parse.GetValue(threads), parse.GetValue(churn),
            parse.GetValue(seconds), parse.GetValue(json)!, parse.GetValue(svg)!, parse.GetValue(markdown)));
        return command;
    }

    private static int Execute(string? workloads, string? paths, string? threads, string? churn, double seconds,
        string jsonFile, string svgFile, string? markdownFile)
    {
        IReadOnlyList<BenchConfig> configs;
        IReadOnlyList<PathKind> pathList;
        try
        {
            configs = BenchPlan.Build(workloads, threads, churn);
            pathList = BenchPlan.Paths(paths);
            if (!(seconds > 0 && seconds <= 3600))
            {
                throw new ArgumentException("--seconds: must be in (0, 3600]");
            }
        }
        catch (ArgumentException e)
        {
            AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(e.Message)}");
            return 2;
        }

        MachineInfo machine = MachineInfo.Collect();
        AnsiConsole.MarkupLine(Markup.Escape(
            $"faultline bench: {configs.Count} configuration(s) x {pathList.Count} path(s), {seconds.ToString(CultureInfo.InvariantCulture)} s each; " +
            $"{machine.Cores} cores, {machine.Cpu}, Linux {machine.Kernel}, {machine.Runtime}, load {machine.LoadAverage}"));

        var runs = configs.SelectMany(c => pathList.Select(p => (Config: c, Path: p))).ToList();
        var results = new List<BenchResult>();
        TimeSpan duration = TimeSpan.FromSeconds(seconds);
        AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(context =>
            {
                ProgressTask task = context.AddTask("bench", maxValue: runs.Count);
                for (int i = 0; i < runs.Count; i++)
                {
                    (BenchConfig config, PathKind path) = runs[i];
                    task.Description = Markup.Escape($"{config.Workload.Name} t={config.Shape.Threads}{(config.Shape.Churn > 0 ? $"+{config.Shape.Churn}" : "")} {PathNames.Name(path)}");
                    int done = i;
                    BenchResult result = BenchRunner.Run(config.Workload, path, config.Shape, duration, f => task.Value = done + f);
                    results.Add(result);
                    task.Value = i + 1;
                }
                task.Description = "bench done";
            });

        TableReport.Print(AnsiConsole.Console, results);
        JsonReport.Write(jsonFile, machine, results);
        SvgChart.Write(svgFile, machine, results);
        if (markdownFile is not null)
        {
            File.WriteAllText(markdownFile, TableReport.Markdown(results));
        }
        AnsiConsole.MarkupLine(Markup.Escape($"wrote {jsonFile} and {svgFile}{(markdownFile is null ? "" : $" and {markdownFile}")}"));

        List<BenchResult> failed = results.Where(r => !r.Verified).ToList();
        foreach (BenchResult r in failed)
        {
            AnsiConsole.MarkupLine($"[red]verification failed:[/] {Markup.Escape($"{r.Workload} {r.Path} t={r.Threads}: {r.Mismatches} mismatch(es); {r.Error}")}");
        }
        return failed.Count == 0 ? 0 : 1;
    }
}
