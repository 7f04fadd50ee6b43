using System.CommandLine;
using System.Globalization;
using Faultline.Cli.Paths;
using Faultline.Cli.Reporting;
using Faultline.Cli.Running;
using Faultline.Cli.Statistics;
using Faultline.Cli.Workloads;
using Spectre.Console;

namespace Faultline.Cli.Commands;

/// <summary>
/// <c>faultline bench</c>: runs workloads on Faultline's fault paths and on the host kernel, side by side, every case
/// <c>--repeat</c> times in a shuffled order per repeat, with the hardware floors measured in the same run; prints
/// medians [min–max], writes a JSON report and a PNG and SVG chart. Exit code 0, or 1 when any run read back a wrong
/// value (or failed), or 2 for an error (bad options, an output that cannot be written; one line on stderr).
/// </summary>
internal static class BenchCommand
{
    /// <summary>Builds the command; every option is checked while parsing, before anything runs.</summary>
    public static Command Create()
    {
        var workload = new Option<string?>("--workload", "-w")
        {
            Description = "Workloads, comma list: page_fault1, mixed, pft, mmap1, ebizzy, page_fault2, page_fault3, file_read, fork, fork-churn, malloc, userfault, thp, swap (its four variants: swap-compressed-seq, swap-compressed-random, swap-file-seq, swap-file-random), replay:TRACE (a program recorded by faultline record), or all (default: the suite, without the fork workloads)",
        };
        OptionChecks.Parses(workload, text => WorkloadCatalog.ParseList(text));
        var path = new Option<string?>("--path", "-p")
        {
            Description = "Paths, comma list: mmap-lock, speculative, vma-lock, kernel, or all (default all); also " +
                "speculative-no-table-alloc (speculative with speculative page-table allocation off, as the SPF patches were posted; not in all) vma-lock-no-fault-around (vma-lock with fault-around off; not in all) and vma-lock-no-swap-readahead (vma-lock with swap readahead off; not in all)",
        };
        OptionChecks.Parses(path, text => BenchPlan.Paths(text));
        var threads = new Option<string?>("--threads", "-t")
        {
            Description = "Faulting threads, a number or a comma list for scaling runs, e.g. 1,2,4,8,16 (default: the suite's " +
                "counts, 1 or 2 per workload; 1 when --workload or --churn is given, 2 for malloc)",
        };
        OptionChecks.Parses(threads, text => ListOption.Integers(text, "--threads", 1));
        var churn = new Option<string?>("--churn")
        {
            Description = "Churn threads of the mixed, fork-churn and file (page_fault2, page_fault3, file_read) workloads (map/mprotect/unmap loop) and mutating threads of malloc " +
                "(brk, mmap, mremap, madvise, munmap) and the swap workloads' map/mprotect/unmap threads, number or comma list (default 1, 2 for malloc, 0 for the file and swap workloads); " +
                "only those workloads have churn, so --workload must include one of them",
        };
        var forkMib = new Option<int>("--fork-mib")
        {
            Description = $"Region of the fork and fork-churn workloads in MiB, in [1, {BenchPlan.MaxForkMib}] (fork always runs one thread)",
            DefaultValueFactory = _ => WorkloadSizes.ForkRegionMib,
            CustomParser = OptionChecks.Number("--fork-mib", 1, BenchPlan.MaxForkMib, WorkloadSizes.ForkRegionMib),
        };
        OptionChecks.Parses(churn, text => ListOption.Integers(text, "--churn", 0));
        var seconds = new Option<double>("--seconds", "-s")
        {
            Description = "Measured seconds per run (after a short warm-up), in [0.001, 3600]",
            DefaultValueFactory = _ => BenchPlan.DefaultSeconds,
            CustomParser = OptionChecks.Number("--seconds", 0.001, 3600, BenchPlan.DefaultSeconds),
        };
        var repeat = new Option<int>("--repeat", "-r")
        {
            Description = "Runs of every case, interleaved in a shuffled order per repeat; figures are medians [min–max], in [1, 1000]",
            DefaultValueFactory = _ => BenchPlan.DefaultRepeats,
            CustomParser = OptionChecks.Number("--repeat", 1, 1000, BenchPlan.DefaultRepeats),
        };
        var json = new Option<string>("--json")
        {
            Description = "JSON report file (every repeat, the summaries, machine, host facts, commit)",
            DefaultValueFactory = _ => "bench-results.json",
        };
        var svg = new Option<string>("--svg")
        {
            Description = "SVG chart file",
            DefaultValueFactory = _ => "bench-results.svg",
        };
        var png = new Option<string>("--png")
        {
            Description = "PNG chart file",
            DefaultValueFactory = _ => "bench-results.png",
        };
        var markdown = new Option<string?>("--markdown")
        {
            Description = "Also write the tables as Markdown (GitHub tables, medians [min–max]) to this file",
        };
        foreach (Option<string> output in new[] { json, svg, png })
        {
            OptionChecks.OutputFile(output);
        }
        OptionChecks.OutputFile(markdown);
        var command = new Command("bench", "Measure page-fault and mmap throughput of Faultline's fault paths against the host kernel")
        {
            workload, path, threads, churn, forkMib, seconds, repeat, json, svg, png, markdown,
        };
        command.Validators.Add(result =>
        {
            if (result.GetResult(churn) is { Implicit: false } && result.GetResult(workload)?.GetValueOrDefault<string?>() is string chosen
                && OptionChecks.TryParse(() => WorkloadCatalog.ParseList(chosen)) is { } workloads && !workloads.Any(w => w.UsesChurn))
            {
                result.AddError("--churn: only the mixed, fork-churn and malloc workloads have churn threads; add one of them to --workload");
            }
        });
        command.SetAction(parse => Execute(
            new BenchOptions(parse.GetValue(workload), parse.GetValue(path), parse.GetValue(threads), parse.GetValue(churn),
                parse.GetValue(seconds), parse.GetValue(repeat), parse.GetValue(forkMib)),
            new BenchOutputs(parse.GetValue(json)!, parse.GetValue(svg)!, parse.GetValue(png)!, parse.GetValue(markdown))));
        return command;
    }

    private static int Execute(BenchOptions options, BenchOutputs outputs)
    {
        // Checked while parsing (Create): these cannot fail here.
        IReadOnlyList<BenchConfig> configs = BenchPlan.Build(options.Workloads, options.Threads, options.Churn, options.ForkMib);
        IReadOnlyList<PathKind> pathList = BenchPlan.Paths(options.Paths);

        MachineInfo machine = MachineInfo.Collect();
        // Read before measuring: a checkout that changes during a long run must not relabel its figures.
        string commit = GitCommit.Current();
        (IReadOnlyList<BenchCase> cases, IReadOnlyList<string> skipped) = BenchPlan.Cases(configs, pathList);
        foreach (string line in skipped)
        {
            AnsiConsole.MarkupLine(Markup.Escape($"skipped: {line}"));
        }
        AnsiConsole.MarkupLine(Markup.Escape(
            $"faultline bench: {cases.Count} case(s) x {options.Repeats} repeat(s), {options.Seconds.ToString(CultureInfo.InvariantCulture)} s each, shuffled per repeat after a warm-up pass; " +
            $"{machine.Cores} cores, {machine.Cpu}, {machine.KernelLabel}, {machine.Runtime}, load {machine.LoadAverage}"));

        var random = new Random();
        IReadOnlyList<IReadOnlyList<BenchCase>> schedule = RepeatSchedule.Shuffled(cases, options.Repeats, random);
        var results = new List<BenchResult>();
        var floors = new List<FloorResult>();
        AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(context =>
            {
                IReadOnlyList<BenchCase> warmUp = BenchPlan.WarmUpCases(cases);
                ProgressTask progress = context.AddTask("floors", maxValue: warmUp.Count + cases.Count * options.Repeats);
                using var floorProbe = new FloorProbe(random, machine.ReadFaultMapsZeroPage);
                // The warm-up pass, unreported: every floor and every workload on every path once, so that the JIT's
                // tiers settle before the first repeat instead of during it.
                _ = floorProbe.Measure(-1);
                RunAll(progress, warmUp, TimeSpan.FromSeconds(Math.Min(options.Seconds, BenchPlan.WarmUpSeconds)), "warm-up", (_, _) => { });
                for (int repeat = 0; repeat < options.Repeats; repeat++)
                {
                    progress.Description = $"floors, repeat {repeat + 1}";
                    floors.AddRange(floorProbe.Measure(repeat));
                    int current = repeat;
                    RunAll(progress, schedule[repeat], TimeSpan.FromSeconds(options.Seconds), $"repeat {repeat + 1}",
                        (result, order) => results.Add(result with { Repeat = current, Order = order }));
                }
                progress.Description = "bench done";
            });

        var report = BenchReport.Create(machine, commit, options.Repeats, options.Seconds, results, floors, skipped);
        TableReport.Print(AnsiConsole.Console, report);
        JsonReport.Write(outputs.Json, report);
        ChartReport.WriteSvg(outputs.Svg, report);
        ChartReport.WritePng(outputs.Png, report);
        if (outputs.Markdown is not null)
        {
            File.WriteAllText(outputs.Markdown, TableReport.Markdown(report));
        }
        AnsiConsole.MarkupLine(Markup.Escape($"wrote {outputs.Json}, {outputs.Svg} and {outputs.Png}{(outputs.Markdown is null ? "" : $" and {outputs.Markdown}")}"));

        List<BenchResult> failed = results.Where(r => !r.Verified).ToList();
        foreach (BenchResult r in failed)
        {
            AnsiConsole.MarkupLine($"[red]verification failed:[/] {Markup.Escape($"{r.Workload} {r.Path} t={r.Threads} repeat {r.Repeat + 1}: {r.Mismatches} mismatch(es); {r.Error}")}");
        }
        return failed.Count == 0 ? 0 : 1;
    }

    // Runs each case once in the given order, advancing the progress bar by one per case.
    private static void RunAll(ProgressTask progress, IReadOnlyList<BenchCase> order, TimeSpan duration, string stage,
        Action<BenchResult, int> record)
    {
        for (int i = 0; i < order.Count; i++)
        {
            BenchCase benchCase = order[i];
            progress.Description = Markup.Escape($"{stage}: {benchCase.Label}");
            double start = progress.Value;
            BenchResult result = BenchRunner.Run(benchCase.Config.Workload, benchCase.Path, benchCase.Config.Shape, duration,
                f => progress.Value = start + f);
            record(result, i);
            progress.Value = start + 1;
        }
    }
}
