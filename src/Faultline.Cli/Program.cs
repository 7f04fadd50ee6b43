using System.CommandLine;
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
        var root = new RootCommand("Faultline: a Linux-compatible virtual memory manager for .NET")
        {
            BenchCommand.Create(),
            StressCommand.Create(),
        };
        return root.Parse(args).Invoke();
    }
}
