namespace Faultline.Cli.Replay;

/// <summary>
/// The symbolic names strace prints for the memory calls' flags and their x86-64 values (<c>PROT_*</c>, <c>MAP_*</c>,
/// <c>MREMAP_*</c>, <c>MADV_*</c>, <c>MS_*</c>, <c>MCL_*</c>, <c>MLOCK_*</c>, <c>CLONE_*</c>, signals in clone flags).
/// </summary>
internal static class LinuxConstants
{
    private static readonly Dictionary<string, ulong> Values = Build();

    /// <summary>The value of <paramref name="name"/>, or null when it is not known.</summary>
    public static ulong? Find(string name) => Values.TryGetValue(name, out ulong value) ? value : null;

    private static Dictionary<string, ulong> Build()
    {
        var table = new Dictionary<string, ulong>(StringComparer.Ordinal)
        {
            ["PROT_NONE"] = 0, ["PROT_READ"] = 1, ["PROT_WRITE"] = 2, ["PROT_EXEC"] = 4, ["PROT_SEM"] = 8,
            ["PROT_GROWSDOWN"] = 0x01000000, ["PROT_GROWSUP"] = 0x02000000,
            ["MAP_FILE"] = 0, ["MAP_SHARED"] = 0x01, ["MAP_PRIVATE"] = 0x02, ["MAP_SHARED_VALIDATE"] = 0x03, ["MAP_FIXED"] = 0x10,
            ["MAP_ANONYMOUS"] = 0x20, ["MAP_32BIT"] = 0x40, ["MAP_GROWSDOWN"] = 0x100, ["MAP_DENYWRITE"] = 0x800,
            ["MAP_EXECUTABLE"] = 0x1000, ["MAP_LOCKED"] = 0x2000, ["MAP_NORESERVE"] = 0x4000, ["MAP_POPULATE"] = 0x8000,
            ["MAP_NONBLOCK"] = 0x10000, ["MAP_STACK"] = 0x20000, ["MAP_HUGETLB"] = 0x40000, ["MAP_SYNC"] = 0x80000,
            ["MAP_FIXED_NOREPLACE"] = 0x100000, ["MAP_UNINITIALIZED"] = 0x4000000,
            ["MREMAP_MAYMOVE"] = 1, ["MREMAP_FIXED"] = 2, ["MREMAP_DONTUNMAP"] = 4,
            ["MS_ASYNC"] = 1, ["MS_INVALIDATE"] = 2, ["MS_SYNC"] = 4,
            ["MCL_CURRENT"] = 1, ["MCL_FUTURE"] = 2, ["MCL_ONFAULT"] = 4, ["MLOCK_ONFAULT"] = 1,
            ["MADV_NORMAL"] = 0, ["MADV_RANDOM"] = 1, ["MADV_SEQUENTIAL"] = 2, ["MADV_WILLNEED"] = 3, ["MADV_DONTNEED"] = 4,
            ["MADV_FREE"] = 8, ["MADV_REMOVE"] = 9, ["MADV_DONTFORK"] = 10, ["MADV_DOFORK"] = 11, ["MADV_MERGEABLE"] = 12,
            ["MADV_UNMERGEABLE"] = 13, ["MADV_HUGEPAGE"] = 14, ["MADV_NOHUGEPAGE"] = 15, ["MADV_DONTDUMP"] = 16,
            ["MADV_DODUMP"] = 17, ["MADV_WIPEONFORK"] = 18, ["MADV_KEEPONFORK"] = 19, ["MADV_COLD"] = 20,
            ["MADV_PAGEOUT"] = 21, ["MADV_POPULATE_READ"] = 22, ["MADV_POPULATE_WRITE"] = 23, ["MADV_DONTNEED_LOCKED"] = 24,
            ["MADV_COLLAPSE"] = 25, ["MADV_HWPOISON"] = 100, ["MADV_SOFT_OFFLINE"] = 101, ["MADV_GUARD_INSTALL"] = 102,
            ["MADV_GUARD_REMOVE"] = 103,
            ["CLONE_VM"] = 0x100, ["CLONE_FS"] = 0x200, ["CLONE_FILES"] = 0x400, ["CLONE_SIGHAND"] = 0x800,
            ["CLONE_PIDFD"] = 0x1000, ["CLONE_PTRACE"] = 0x2000, ["CLONE_VFORK"] = 0x4000, ["CLONE_PARENT"] = 0x8000,
            ["CLONE_THREAD"] = 0x10000, ["CLONE_NEWNS"] = 0x20000, ["CLONE_SYSVSEM"] = 0x40000, ["CLONE_SETTLS"] = 0x80000,
            ["CLONE_PARENT_SETTID"] = 0x100000, ["CLONE_CHILD_CLEARTID"] = 0x200000, ["CLONE_DETACHED"] = 0x400000,
            ["CLONE_UNTRACED"] = 0x800000, ["CLONE_CHILD_SETTID"] = 0x1000000, ["CLONE_NEWCGROUP"] = 0x2000000,
            ["CLONE_NEWUTS"] = 0x4000000, ["CLONE_NEWIPC"] = 0x8000000, ["CLONE_NEWUSER"] = 0x10000000,
            ["CLONE_NEWPID"] = 0x20000000, ["CLONE_NEWNET"] = 0x40000000, ["CLONE_IO"] = 0x80000000,
            ["CLONE_CLEAR_SIGHAND"] = 0x100000000, ["CLONE_INTO_CGROUP"] = 0x200000000,
        };
        // MAP_HUGE_<size>: log2 of the page size in bits 26..31.
        foreach ((string size, int shift) in new[] { ("16KB", 14), ("64KB", 16), ("512KB", 19), ("1MB", 20), ("2MB", 21), ("8MB", 23),
            ("16MB", 24), ("32MB", 25), ("256MB", 28), ("512MB", 29), ("1GB", 30), ("2GB", 31), ("16GB", 34) })
        {
            table[$"MAP_HUGE_{size}"] = (ulong)shift << 26;
        }
        // The exit signal in clone's flags (SIGCHLD and kin), 1..64.
        string[] signals = ["SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1",
            "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP",
            "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS"];
        for (int i = 0; i < signals.Length; i++)
        {
            table[signals[i]] = (ulong)(i + 1);
        }
        return table;
    }
}
