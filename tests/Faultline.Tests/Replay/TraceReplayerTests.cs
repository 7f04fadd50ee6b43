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

    private static readonly string[] Lines =
    [
        "100 execve(\"/bin/x\", [\"x\"], 0x7fffffffe5b8 /* 3 vars */) = 0",
        "100 brk(NULL) = 0x555555557000",
        "100 mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7fc3000",
        "100 mmap(NULL, 36231, PROT_READ, MAP_PRIVATE, 3</etc/ld.so.cache>, 0) = 0x7ffff7fba000",
        "100 munmap(0x7ffff7fba000, 36231) = 0",
        "100 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7ffff7d9fa10) = 200",
        "200 munmap(0x7ffff7fc3000, 8192) = 0",
        "100 mprotect(0x7ffff7fc3000, 4096, PROT_READ) = 0",
        "200 mprotect(0x7ffff7fc3000, 4096, PROT_READ) = -1 ENOMEM (Cannot allocate memory)",
        "100 mbind(0x7ffff7fc3000, 4096, MPOL_BIND, [0x1], 2, 0) = 0",
        "100 brk(0x555555578000) = 0x555555578000",
        "200 +++ exited with 0 +++",
    ];

    private static Trace Build(IEnumerable<string> lines)
    {
        IReadOnlyList<TraceCall> calls = StraceParser.Parse(lines);
        var layout = new ProcessLayout(0, "/bin/x", 0x5555_5555_7000, 0x7FFF_F7FF_F000, 0x1000, 8 << 20, 8 << 20, false, 65530,
        [
            new InitialMapping(0x5555_5555_4000, 0x5555_5555_6000, "r-xp", "/bin/x"),
            new InitialMapping(0x7FFF_F7FC_5000, 0x7FFF_F7FF_F000, "r-xp", "/lib/ld.so"),
            new InitialMapping(0x7FFF_FFFD_E000, 0x7FFF_FFFF_F000, "rw-p", "[stack]"),
            new InitialMapping(0xFFFF_FFFF_FF60_0000, 0xFFFF_FFFF_FF60_1000, "--xp", "[vsyscall]"),
        ], ThpAlignedPlacement: true);
        return new Trace(Trace.CurrentVersion, ["x"], "test", 0, null, false, [layout], calls, [],
            new Dictionary<string, string> { ["/etc/ld.so.cache"] = "ext4" });
    }

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
