using System.CommandLine;
using System.CommandLine.Help;
using Faultline.Cli.Commands;
using Spectre.Console;

namespace Faultline.Cli;

/// <summary>
/// The <c>faultline</c> command line: <c>bench</c>, <c>stress</c>, <c>record</c> and <c>replay</c>. Every error, a bad option or a failure while
/// running, is one line on stderr (<c>faultline: …</c>) and exit code 2; help goes to stdout only when asked for.
/// </summary>
internal static class Program
{
    /// <summary>The exit code of every error that is not a measurement's own verdict.</summary>
    public const int ErrorExitCode = 2;

    private static int Main(string[] args)
    {
        if (Console.IsOutputRedirected)
        {
            // A log or a pipe: plain text, no escape codes, and wide enough that the table does not wrap.
            AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings
            {
                Ansi = AnsiSupport.No,
                ColorSystem = ColorSystemSupport.NoColors,
                Interactive = InteractionSupport.No,
            });
            AnsiConsole.Profile.Width = 240;
        }
        return Run(args, Console.Out, Console.Error);
    }

    /// <summary>Parses and runs <paramref name="args"/>; help and version go to <paramref name="output"/>, errors to <paramref name="error"/>.</summary>
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        ParseResult parse = Create().Parse(args);
        // Help and version clear parse errors: "bench --help" shows help even where a default output is not writable.
        if (parse.Errors.Count > 0 && parse.Action is not { ClearsParseErrors: true })
        {
            error.WriteLine($"faultline: {string.Join("; ", parse.Errors.Select(e => e.Message).Distinct())} (see faultline --help)");
            return ErrorExitCode;
        }
        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            // A failure while running (a report that cannot be written after all, a host call that failed): one line.
            error.WriteLine($"faultline: {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}");
            return ErrorExitCode;
        }
    }

    /// <summary>The command tree.</summary>
    public static Command Create() =>
        // A plain command named for the tool: a RootCommand takes its name from the entry assembly (Faultline.Cli).
        new("faultline", "Faultline: a Linux-compatible virtual memory manager for .NET")
        {
            new HelpOption(),
            new VersionOption(),
            BenchCommand.Create(),
            StressCommand.Create(),
            RecordCommand.Create(),
            ReplayCommand.Create(),
        };
}
