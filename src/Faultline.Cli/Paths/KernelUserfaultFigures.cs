namespace Faultline.Cli.Paths;

/// <summary>
/// One run of <c>Native/uffd_bench.c</c>: the host kernel's userfaultfd round trip (fault, handler thread's read,
/// <c>UFFDIO_COPY</c>, resume) over every page of a region.
/// </summary>
/// <param name="Pages">Pages faulted (one round trip each).</param>
/// <param name="WallSeconds">Wall-clock time of the faulting loop.</param>
/// <param name="CpuSeconds">CPU time of the faulting thread in that loop (it sleeps while the handler works).</param>
/// <param name="Handled">Faults the handler answered.</param>
/// <param name="Mismatches">Pages whose stamp was wrong after the copy.</param>
/// <param name="UserModeOnly">True when the channel was opened with <c>UFFD_USER_MODE_ONLY</c> (not root).</param>
internal sealed record KernelUserfaultFigures(long Pages, double WallSeconds, double CpuSeconds, long Handled, long Mismatches, bool UserModeOnly)
{
    /// <summary>Parses the program's line of <c>key=value</c> integers.</summary>
    /// <exception cref="FormatException">A key is missing or a value is not an integer.</exception>
    public static KernelUserfaultFigures Parse(string line)
    {
        IReadOnlyDictionary<string, long> values = KeyValueLine.Parse(line, "uffd_bench");
        long Get(string key) => KeyValueLine.Get(values, key, "uffd_bench", line);
        return new KernelUserfaultFigures(Get("pages"), Get("wall_ns") / 1e9, Get("cpu_ns") / 1e9, Get("handled"), Get("mismatches"),
            Get("user_mode_only") != 0);
    }
}
