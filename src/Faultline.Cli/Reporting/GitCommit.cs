using System.ComponentModel;
using System.Diagnostics;

namespace Faultline.Cli.Reporting;

/// <summary>The commit a report was measured at, so that figures can be traced to the code that produced them.</summary>
internal static class GitCommit
{
    /// <summary>Used when git or the repository is not there.</summary>
    public const string Unknown = "unknown";

    /// <summary><c>git rev-parse HEAD</c> in the current directory, or <see cref="Unknown"/>.</summary>
    public static string Current()
    {
        var start = new ProcessStartInfo("git", "rev-parse HEAD")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        try
        {
            using Process git = Process.Start(start) ?? throw new InvalidOperationException("git did not start");
            string output = git.StandardOutput.ReadToEnd().Trim();
            git.WaitForExit();
            return git.ExitCode == 0 && output.Length > 0 ? output : Unknown;
        }
        catch (Exception e) when (e is Win32Exception or InvalidOperationException)
        {
            return Unknown;
        }
    }
}
