using Faultline.Cli.Replay;

namespace Faultline.Tests.Replay;

/// <summary>
/// A small written trace: an exec with its layout (executable, ld.so, stack), brk, an anonymous mapping placed below
/// ld.so, a file mapping and its unmap, a fork whose child unmaps what the parent keeps, an unmodelled mbind, brk growth.
/// </summary>
internal static class SampleTrace
{
    /// <summary>The strace lines.</summary>
    public static readonly string[] Lines =
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

    /// <summary>A trace of <paramref name="lines"/> with the layout they were recorded in.</summary>
    public static Trace Build(IEnumerable<string> lines)
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
}
