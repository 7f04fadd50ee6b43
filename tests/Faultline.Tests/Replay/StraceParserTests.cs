using Faultline.Cli.Replay;
using Xunit;

namespace Faultline.Tests.Replay;

/// <summary>The strace forms a recording meets, read into calls.</summary>
public class StraceParserTests
{
    [Fact]
    public void UnfinishedCallsInterleavedAcrossThreadsAreJoinedInCompletionOrder()
    {
        IReadOnlyList<TraceCall> calls = StraceParser.Parse(
        [
            "101 1796409459.100000 mmap(NULL, 8392704, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_STACK, -1, 0 <unfinished ...>",
            "102 1796409459.100100 munmap(0x7ffff7fb7000, 36231 <unfinished ...>",
            "101 1796409459.100200 <... mmap resumed>) = 0x7ffff57e8000",
            "102 1796409459.100300 <... munmap resumed>) = 0",
        ]);

        Assert.Collection(calls,
            c =>
            {
                Assert.Equal((0, 101, "mmap", "0x7ffff57e8000"), (c.Seq, c.Tid, c.Name, c.Result));
                Assert.Equal(["NULL", "8392704", "PROT_NONE", "MAP_PRIVATE|MAP_ANONYMOUS|MAP_STACK", "-1", "0"], c.Args);
                Assert.Equal(1796409459.1, c.Time, 6);
            },
            c => Assert.Equal((1, 102, "munmap", "0"), (c.Seq, c.Tid, c.Name, c.Result)));
    }

    [Fact]
    public void SignalAndExitLinesAreSkippedAndACallLeftOpenByAnExitHasNoResult()
    {
        IReadOnlyList<TraceCall> calls = StraceParser.Parse(
        [
            "7 madvise(0x7ffff57e8000, 8368128, MADV_DONTNEED <unfinished ...>",
            "6 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=9, si_uid=0, si_status=0, si_utime=0, si_stime=0} ---",
            "7 +++ exited with 0 +++",
            "8 mprotect(0x7ffff7fa4000, 16384, PROT_READ <unfinished ...>",
            "8 <... mprotect resumed>) = ?",
            "6 +++ killed by SIGKILL +++",
        ]);

        Assert.Equal(2, calls.Count);
        Assert.All(calls, c => Assert.True(c.ResultUnknown));
        Assert.Equal(["madvise", "mprotect"], calls.Select(c => c.Name));
    }

    [Fact]
    public void AnErrorKeepsItsNameAndAFileDescriptorItsPath()
    {
        TraceCall failed = StraceParser.ParseCall("mmap(NULL, 140737488355328, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = -1 ENOMEM (Cannot allocate memory)", 5, 0);
        TraceCall file = StraceParser.ParseCall("mmap(0x7ffff7dfb000, 1400832, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE, 3</usr/lib/x86_64-linux-gnu/libc.so.6>, 0x26000) = 0x7ffff7dfb000", 5, 0);

        Assert.Equal(("-1", "ENOMEM"), (failed.Result, failed.Errno));
        Assert.Equal("/usr/lib/x86_64-linux-gnu/libc.so.6", file.File);
        Assert.Equal(3UL, ArgumentText.Value(file.Args[4]));
        Assert.Null(failed.File);
    }

    [Fact]
    public void ACloneKeepsThePlaceOfItsEntryBeforeItsChildsCalls()
    {
        IReadOnlyList<TraceCall> calls = StraceParser.Parse(
        [
            "10 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, child_tid=0x7ffff6a3d990, parent_tid=0x7ffff6a3d990, exit_signal=0, stack=0x7ffff623d000, stack_size=0x7fff00, tls=0x7ffff6a3d6c0} <unfinished ...>",
            "11 mmap(NULL, 134217728, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, -1, 0) = 0x7fffee800000",
            "10 <... clone3 resumed> => {parent_tid=[11]}, 88) = 11",
            "[pid    12] brk(NULL) = 0x555555559000",
        ]);

        Assert.Equal(["clone3", "mmap"], calls.Take(2).Select(c => c.Name));
        Assert.Equal("11", calls[0].Result);
        Assert.StartsWith("{flags=CLONE_VM|", calls[0].Args[0]);
        Assert.Equal(12, calls[2].Tid);
    }

    [Theory]
    [InlineData("PROT_READ|PROT_WRITE", 3UL)]
    [InlineData("MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE", 0x4022UL)]
    [InlineData("MAP_PRIVATE|MAP_FIXED|0x80000000", 0x8000_0012UL)]
    [InlineData("0x7ffff7dfb000", 0x7ffff7dfb000UL)]
    [InlineData("NULL", 0UL)]
    [InlineData("-1", ulong.MaxValue)]
    [InlineData("MADV_DONTNEED", 4UL)]
    [InlineData("MREMAP_MAYMOVE|MREMAP_FIXED", 3UL)]
    [InlineData("MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|MAP_HUGE_2MB", 0x5404_0022UL)]
    [InlineData("3</usr/lib/x86_64-linux-gnu/libc.so.6>", 3UL)]
    [InlineData("PROT_NONE", 0UL)]
    public void ValuesAreReadFromNamesHexAndDecimal(string text, ulong expected) => Assert.Equal(expected, ArgumentText.Value(text));

    [Fact]
    public void AnUnknownNameIsAFormatError() => Assert.Throws<FormatException>(() => ArgumentText.Value("MAP_PRIVATE|MAP_BOGUS"));

    [Fact]
    public void ArgumentsSplitOnlyAtTopLevelCommas()
    {
        IReadOnlyList<string> args = ArgumentText.Split("\"/usr/bin/a,b\", [\"a\", \"b\"], 0x7ffc /* 4 vars */, 5</tmp/x,y>, 1<<26");

        Assert.Equal(["\"/usr/bin/a,b\"", "[\"a\", \"b\"]", "0x7ffc /* 4 vars */", "5</tmp/x,y>", "1<<26"], args);
        Assert.Equal("/usr/bin/a,b", ArgumentText.Unquote(args[0]));
    }
}
