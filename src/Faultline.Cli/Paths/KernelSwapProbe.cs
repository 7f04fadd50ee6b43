namespace Faultline.Cli.Paths;

/// <summary>
/// Whether the host could give the swap workload a kernel row: that needs an active swap area (<c>/proc/swaps</c>) and
/// a cgroup v2 hierarchy with the memory controller (<c>memory.max</c>) to hold a native helper to half its working
/// set. No helper exists yet, so where both are present the row says that instead.
/// </summary>
internal static class KernelSwapProbe
{
    /// <summary>One line saying why the kernel row is not run (never null: see the type's remarks).</summary>
    public static string Problem { get; } = Probe();

    private static string Probe()
    {
        const string prefix = "kernel swap reference not run: ";
        bool swapOn = File.Exists("/proc/swaps") && File.ReadLines("/proc/swaps").Skip(1).Any(l => l.Trim().Length > 0);
        const string controllers = "/sys/fs/cgroup/cgroup.controllers";
        bool memoryMax = File.Exists(controllers) && File.ReadAllText(controllers).Split(' ', '\n').Contains("memory");
        if (!swapOn || !memoryMax)
        {
            return prefix + string.Join("; ", new[]
            {
                swapOn ? null : "the host has no active swap area (/proc/swaps lists none)",
                memoryMax ? null : "no cgroup v2 memory controller (no memory.max) to confine a helper",
            }.OfType<string>());
        }
        return prefix + "the host allows it, but no native helper bounded by memory.max exists yet";
    }
}
