using Faultline.Cli;
using Faultline.Cli.Replay;
using Xunit;

namespace Faultline.Tests.Replay;

/// <summary>
/// The replay on a written trace: the exec's layout pre-populated so that top-down placement matches, a file mapping
/// replayed as an anonymous stand-in, a fork replayed as a copy, an unmodelled call reported, a wrong kernel result
/// reported with the calls before it, and the command's summary line and exit code.
/// </summary>
public sealed class TraceReplayerTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("faultline-replayer-test").FullName;

    private static readonly string[] Lines = SampleTrace.Lines;

    private static Trace Build(IEnumerable<string> lines) => SampleTrace.Build(lines);

    [Theory]
    [InlineData(FaultPath.MmapLock, false)]
    [InlineData(FaultPath.Speculative, true)]
    [InlineData(FaultPath.VmaLock, false)]
    public void EveryModelledCallReturnsTheKernelsResult(FaultPath path, bool serial)
    {
        ReplayReport report = new TraceReplayer(Build(Lines), path, "p", 1 << 24).Run(serial ? ReplayThreads.Serial : ReplayThreads.Recorded);

        Assert.True(report.Differences.Count == 0, report.Render());
        Assert.Equal((9, 8, 1, 1), (report.Calls, report.Equal, report.Forks, report.Execs));
        (string call, string reason) = Assert.Single(report.Unmodelled);
        Assert.Contains("mbind", call);
        Assert.Contains("no such call", reason);
        Assert.Equal(1, Assert.Single(report.StandIns).Value);
    }

    [Fact]
    public void AWrongResultIsADifferenceWithTheCallsBeforeIt()
    {
        string[] lines = [.. Lines];
        lines[2] = lines[2].Replace("= 0x7ffff7fc3000", "= 0x7ffff7fc1000", StringComparison.Ordinal);

        ReplayReport report = new TraceReplayer(Build(lines), FaultPath.MmapLock, "mmap-lock", 1 << 24).Run(ReplayThreads.Serial);

        ReplayDifference first = report.Differences[0];
        Assert.Equal(("0x7ffff7fc1000", "0x7ffff7fc3000"), (first.Kernel, first.Faultline));
        Assert.Contains("brk(NULL)", Assert.Single(first.Before));
        Assert.Contains("mmap-lock: difference: [100] mmap(NULL, 8192", report.Render());
    }

    [Fact]
    public void TheCommandEndsWithTheSummaryLineAndExitsOneOnADifference()
    {
        string good = Path.Combine(_folder, "good.trace");
        string bad = Path.Combine(_folder, "bad.trace");
        TraceFile.Write(good, Build(Lines));
        string[] lines = [.. Lines];
        lines[^2] = lines[^2].Replace("= 0x555555578000", "= 0x555555557000", StringComparison.Ordinal);
        TraceFile.Write(bad, Build(lines));

        (int goodExit, string goodOutput) = Run(["replay", good]);
        (int badExit, string badOutput) = Run(["replay", bad, "--path", "vma-lock", "--threads", "serial"]);

        Assert.Equal(0, goodExit);
        Assert.Equal("calls 27, equal 24, differences 0, unmodelled 3", goodOutput.TrimEnd().Split('\n')[^1]);
        Assert.Equal(1, badExit);
        Assert.Equal("calls 9, equal 7, differences 1, unmodelled 1", badOutput.TrimEnd().Split('\n')[^1]);
        Assert.Contains("unmodelled: mbind x1", badOutput);
        Assert.Contains("stand-ins: 1 file mapping(s)", badOutput);
    }

    [Fact]
    public void ATraceThatIsNotOneIsAnErrorLine()
    {
        string file = Path.Combine(_folder, "not.trace");
        File.WriteAllText(file, "hello");
        var error = new StringWriter();

        Assert.Equal(2, Program.Run(["replay", file], new StringWriter(), error));
        Assert.StartsWith("faultline: ", error.ToString());
        Assert.Contains("not a faultline trace", error.ToString());
    }

    [Theory]
    [InlineData(new[] { "replay", "/nonexistent/x.trace" }, "does not exist")]
    [InlineData(new[] { "replay", "/etc/hostname", "--path", "kernel" }, "--path: replay runs on Faultline's paths")]
    [InlineData(new[] { "replay", "/etc/hostname", "--threads", "many" }, "--threads: 'many' is neither recorded nor serial")]
    [InlineData(new[] { "record" }, "Required argument missing")]
    [InlineData(new[] { "record", "-o", "/nonexistent/x.trace", "--", "true" }, "--output: cannot write")]
    public void BadCommandLinesAreOneErrorLine(string[] args, string expected)
    {
        var output = new StringWriter();
        var error = new StringWriter();

        Assert.Equal(2, Program.Run(args, output, error));
        string line = Assert.Single(error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("faultline: ", line);
        Assert.Contains(expected, line);
        Assert.Equal("", output.ToString());
    }

    private static (int Exit, string Output) Run(string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = Program.Run(args, output, error);
        Assert.Equal("", error.ToString());
        return (exit, output.ToString());
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
