using System.CommandLine;
using Faultline.Cli.Paths;
using Faultline.Cli.Replay;

namespace Faultline.Cli.Commands;

/// <summary>
/// <c>faultline replay TRACE [--path …] [--threads recorded|serial]</c>: replays a recorded trace on Faultline's fault
/// paths and compares every call with the kernel's result. Prints each difference with the calls before it, the file
/// mappings replayed as anonymous stand-ins, the unmodelled calls, and last the line
/// <c>calls N, equal E, differences D, unmodelled U</c> (summed over the paths). Exit code 0 when there is no
/// difference, 1 otherwise, 2 for an error.
/// </summary>
internal static class ReplayCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var trace = new Argument<FileInfo>("trace") { Description = "A trace written by faultline record" };
        trace.AcceptExistingOnly();
        var path = new Option<string?>("--path", "-p")
        {
            Description = "Faultline paths, comma list: mmap-lock, speculative, vma-lock, or all (default all)",
        };
        OptionChecks.Parses(path, text => Paths(text));
        var threads = new Option<string>("--threads", "-t")
        {
            Description = "recorded: each recorded thread's calls on a thread of its own, in the recorded order (default); serial: all on one thread",
            DefaultValueFactory = _ => "recorded",
        };
        threads.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string>() is not ("recorded" or "serial") and var text)
            {
                result.AddError($"--threads: '{text}' is neither recorded nor serial");
            }
        });
        var command = new Command("replay", "Replay a recorded trace on Faultline and compare every result with the kernel's")
        {
            trace, path, threads,
        };
        command.SetAction(parse =>
        {
            TextWriter output = parse.InvocationConfiguration.Output;
            Trace recorded = TraceFile.Read(parse.GetValue(trace)!.FullName);
            ReplayThreads mode = parse.GetValue(threads) == "serial" ? ReplayThreads.Serial : ReplayThreads.Recorded;
            int calls = 0, equal = 0, differences = 0, unmodelled = 0;
            IReadOnlyList<PathKind> paths = Paths(parse.GetValue(path));
            foreach (PathKind p in paths)
            {
                ReplayReport report = new TraceReplayer(recorded, PathNames.ToFaultPath(p), PathNames.Name(p)).Run(mode);
                output.Write(report.Render());
                calls += report.Calls;
                equal += report.Equal;
                differences += report.Differences.Count;
                unmodelled += report.Unmodelled.Count;
            }
            if (recorded.FaultsNote is { } note)
            {
                output.WriteLine($"faults were not recorded: {note}");
            }
            if (paths.Count > 1)
            {
                output.WriteLine($"summed over {paths.Count} paths:");
            }
            output.WriteLine(ReplayReport.Line(calls, equal, differences, unmodelled));
            return differences == 0 ? 0 : 1;
        });
        return command;
    }

    // Faultline's three paths ("all" means those); the kernel's results are the trace itself.
    private static IReadOnlyList<PathKind> Paths(string? text)
    {
        string[] names = (text ?? "all").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (names.Any(n => n.Equals("kernel", StringComparison.OrdinalIgnoreCase)))
        {
            throw new ArgumentException("replay runs on Faultline's paths; the kernel's results are the trace itself");
        }
        return PathNames.ParseList(string.Join(',', names)).Where(p => p != PathKind.Kernel).ToList();
    }
}
