using System.CommandLine;
using System.Globalization;
using Faultline.Cli.Replay;

namespace Faultline.Cli.Commands;

/// <summary>
/// <c>faultline record [-o FILE] [--faults] -- CMD ARGS…</c>: runs CMD with address-space randomisation off under
/// strace (threads and forks followed) and writes its memory calls, the layout of every exec and, with
/// <c>--faults</c>, its page faults where perf can record them. Exit code 0 (whatever the program's own), or 2 for an
/// error: a missing strace or C compiler is one line on stderr.
/// </summary>
internal static class RecordCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var output = new Option<string>("--output", "-o")
        {
            Description = "Trace file to write",
            DefaultValueFactory = _ => "faultline.trace",
        };
        OptionChecks.OutputFile(output);
        var faults = new Option<bool>("--faults")
        {
            Description = $"Also record page faults (perf's {PerfFaults.Event}; where perf cannot, the trace says why)",
        };
        var program = new Argument<string[]>("command")
        {
            Description = "The program and its arguments (after --)",
            Arity = ArgumentArity.OneOrMore,
        };
        var command = new Command("record", "Run a program under strace with randomisation off and write its memory calls as a trace")
        {
            output, faults, program,
        };
        command.SetAction(parse =>
        {
            TextWriter log = parse.InvocationConfiguration.Output;
            string file = parse.GetValue(output)!;
            Trace trace = TraceRecorder.Record(parse.GetValue(program)!, parse.GetValue(faults));
            TraceFile.Write(file, trace);
            log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"faultline record: {trace.Calls.Count} calls, {trace.Layouts.Count} exec(s), {trace.Faults.Count} faults; program exit {trace.ExitCode}; wrote {file}"));
            if (trace.FaultsNote is { } note)
            {
                log.WriteLine($"faultline record: faults not recorded: {note}");
            }
            return 0;
        });
        return command;
    }
}
