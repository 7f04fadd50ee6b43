using Faultline.Cli;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>
/// The command line's one error style: every error, a parse error or an option System.CommandLine's validators
/// reject, is one line on stderr starting <c>faultline:</c>, with exit code 2, no help text and no stack trace, found
/// before anything runs.
/// </summary>
public class CommandLineTests
{
    public static TheoryData<string[], string> BadCommandLines => new()
    {
        { [], "Required command was not provided" },
        { ["bogus"], "Unrecognized command or argument 'bogus'" },
        { ["bench", "--no-such-option"], "Unrecognized command or argument '--no-such-option'" },
        { ["bench", "--json", "/nonexistent-faultline-folder/x.json"], "--json: cannot write '/nonexistent-faultline-folder/x.json'" },
        { ["bench", "--svg", "/nonexistent-faultline-folder/x.svg"], "--svg: cannot write" },
        { ["bench", "--png", "/"], "--png: cannot write '/': it is a folder" },
        { ["bench", "--markdown", "/nonexistent-faultline-folder/x.md"], "--markdown: cannot write" },
        { ["bench", "--threads", "0"], "--threads: '0' is not an integer in [1, 1024]" },
        { ["bench", "--threads", "two"], "--threads: 'two'" },
        { ["bench", "--seconds", "abc"], "--seconds: 'abc' is not a number" },
        { ["bench", "--seconds", "0"], "--seconds: '0' is not a number in [0.001, 3600]" },
        { ["bench", "--repeat", "0"], "--repeat: '0'" },
        { ["bench", "--workload", "nope"], "--workload: unknown workload 'nope'" },
        { ["bench", "--path", "nope"], "--path: unknown path 'nope'" },
        { ["bench", "--workload", "page_fault1", "--churn", "2"], "--churn: only the mixed, fork-churn and malloc workloads have churn threads" },
        { ["bench", "--churn", "-1", "--workload", "mixed"], "--churn: '-1'" },
        { ["stress", "--path", "kernel"], "--path: stress checks Faultline's paths" },
        { ["stress", "--threads", "0"], "--threads: '0'" },
        { ["stress", "--seconds", "x"], "--seconds: 'x'" },
    };

    [Theory]
    [MemberData(nameof(BadCommandLines))]
    public void EveryErrorIsOneLineOnStderrWithExitCode2(string[] args, string expected)
    {
        (int exitCode, string output, string error) = Run(args);

        Assert.Equal(2, exitCode);
        Assert.Equal("", output);
        string line = Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("faultline: ", line);
        Assert.Contains(expected, line);
        Assert.DoesNotContain("Usage:", error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void AnUnwritableOutputIsRefusedBeforeTheRunAndLeavesNoFile()
    {
        string folder = Directory.CreateTempSubdirectory("faultline-cli-test").FullName;
        try
        {
            string json = Path.Combine(folder, "report.json");
            (int exitCode, _, string error) = Run(["bench", "--json", json, "--png", Path.Combine(folder, "missing", "chart.png")]);

            Assert.Equal(2, exitCode);
            Assert.Contains("--png: cannot write", error);
            // The writable one was probed, not left behind: the benchmark never ran.
            Assert.False(File.Exists(json));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void HelpNamesTheToolAndDocumentsEveryPathAndOutput()
    {
        (int rootExit, string root, string rootError) = Run(["--help"]);
        (int benchExit, string bench, string benchError) = Run(["bench", "--help"]);

        Assert.Equal(0, rootExit);
        Assert.Equal("", rootError);
        Assert.Contains("faultline [command] [options]", root);
        Assert.Equal(0, benchExit);
        Assert.Equal("", benchError);
        Assert.Contains("faultline bench [options]", bench);
        Assert.Contains("speculative-no-table-alloc", bench);
        Assert.Contains("--markdown", bench);
        Assert.Contains("1 when --workload or --churn is given", bench);
    }

    [Theory]
    [InlineData("bench", "--workload", "page_fault1,mixed", "--churn", "0,1")]
    [InlineData("bench", "--churn", "2")]
    [InlineData("bench", "--path", "speculative-no-table-alloc", "--threads", "1,2")]
    [InlineData("stress", "--path", "all", "--seconds", "1")]
    public void ValidCommandLinesParseWithoutErrors(params string[] args) =>
        Assert.Empty(Program.Create().Parse(args).Errors);

    private static (int ExitCode, string Output, string Error) Run(string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exitCode = Program.Run(args, output, error);
        return (exitCode, output.ToString(), error.ToString());
    }
}
