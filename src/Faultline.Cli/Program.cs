using System.CommandLine;
using System.CommandLine.Help;
using Faultline.Cli.Commands;
using Spectre.Console;

namespace Faultline.Cli;

/// <summary>The <c>faultline</c> command line: <c>bench</c> and <c>stress</c>.</summary>
internal static class Program
{
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
        // A plain command named for the tool: a RootCommand takes its name from the entry assembly (Faultline.Cli).
        var root = new Command("faultline", "Faultline: a Linux-compatible virtual memory manager for .NET")
        {
            new HelpOption(),
            new VersionOption(),
            BenchCommand.Create(),
            StressCommand.Create(),
        };
        return root.Parse(args).Invoke();
    }
}
