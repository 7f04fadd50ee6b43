using Faultline.Cli.Replay;
using Faultline.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Replay;

/// <summary>
/// The host kernel as the oracle, on real programs: each is recorded now (strace, randomisation off, page faults where
/// perf can record them) and replayed on all three fault paths, and every call Faultline models must return the
/// kernel's result (every mmap, mremap and brk the kernel's address), every fault must resolve as it did. Unmodelled
/// calls are allowed but are printed.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class RealProgramReplayTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("faultline-replay-test").FullName;

    [RealProgramFact("python3")]
    public void PythonScript() => RecordAndReplay(["python3", "-c", "import json; print(len(json.dumps({str(i): i for i in range(20000)})))"]);

    [RealProgramFact("python3")]
    public void ThreadedPython()
    {
        Trace trace = RecordAndReplay(["python3", "-c",
            "import threading\n" +
            "def work(n):\n    return sum(len(bytearray(300000)) for _ in range(20))\n" +
            "t = [threading.Thread(target=work, args=(i,)) for i in range(4)]\n" +
            "[x.start() for x in t]; [x.join() for x in t]"]);

        Assert.True(trace.Calls.Select(c => c.Tid).Distinct().Count() >= 5, "the four threads made calls of their own");
    }

    [RealProgramFact("gcc")]
    public void GccCompilingATinyFile()
    {
        string source = Path.Combine(_folder, "tiny.c");
        File.WriteAllText(source, "int twice(int x) { return 2 * x; }\n");

        Trace trace = RecordAndReplay(["gcc", "-c", source, "-o", Path.Combine(_folder, "tiny.o")]);

        Assert.True(trace.Layouts.Count >= 2, "gcc runs cc1 and as: several execs");
    }

    [RealProgramFact("perl")]
    public void PerlScript() => RecordAndReplay(["perl", "-e", "my %h = map { $_ => 'x' x 100 } 1..20000; print scalar(keys %h), qq(\\n)"]);

    [RealProgramFact("sqlite3")]
    public void Sqlite() => RecordAndReplay(["sqlite3", ":memory:",
        "create table t(x); with recursive c(i) as (select 1 union all select i + 1 from c where i < 20000) insert into t select i from c; select count(*) from t;"]);

    [RealProgramFact("git")]
    public void GitInitAndVersion()
    {
        RecordAndReplay(["git", "--version"]);
        RecordAndReplay(["git", "init", "-q", Path.Combine(_folder, "repository")]);
    }

    private Trace RecordAndReplay(IReadOnlyList<string> command)
    {
        Trace trace = TraceRecorder.Record(command, faults: true, quiet: true);
        string file = Path.Combine(_folder, "program.trace");
        TraceFile.Write(file, trace);
        trace = TraceFile.Read(file);
        output.WriteLine($"{string.Join(' ', command)}: {trace.Calls.Count} calls, {trace.Faults.Count} faults ({trace.FaultsNote ?? "recorded"}), {trace.Layouts.Count} exec(s)");

        Assert.Equal(0, trace.ExitCode);
        Assert.NotEmpty(trace.Layouts);
        foreach ((FaultPath path, ReplayThreads threads) in new[]
        {
            (FaultPath.MmapLock, ReplayThreads.Recorded), (FaultPath.Speculative, ReplayThreads.Recorded),
            (FaultPath.VmaLock, ReplayThreads.Recorded), (FaultPath.VmaLock, ReplayThreads.Serial),
        })
        {
            ReplayReport report = new TraceReplayer(trace, path, path.ToString(), physicalBytes: 1L << 30).Run(threads);
            string text = report.Render();
            output.WriteLine(text.Split('\n').Last(l => l.Length > 0));
            foreach ((string call, string reason) in report.Unmodelled.Take(5))
            {
                output.WriteLine($"  unmodelled: {call}: {reason}");
            }

            Assert.True(report.Differences.Count == 0, text);
            Assert.Equal(report.Calls, report.Equal + report.Unmodelled.Count);
            Assert.True(report.Equal > 20, $"only {report.Equal} calls compared");
        }
        return trace;
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
