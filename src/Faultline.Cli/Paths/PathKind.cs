namespace Faultline.Cli.Paths;

/// <summary>What serves the page faults of a run: one of Faultline's three fault paths, or the host kernel.</summary>
internal enum PathKind
{
    /// <summary>Faultline, classic path under the mmap lock.</summary>
    MmapLock,
    /// <summary>Faultline, speculative page faults.</summary>
    Speculative,
    /// <summary>Faultline, per-VMA locks.</summary>
    VmaLock,
    /// <summary>The host kernel: libc mmap/munmap/mprotect and real pointer accesses (real page faults).</summary>
    Kernel,
    /// <summary>
    /// Faultline, speculative page faults with speculative page-table allocation off: the first fault of every PMD
    /// goes the classic way (the SPF patches as posted). Not in <c>all</c>; name it to compare.
    /// </summary>
    SpeculativeNoTableAllocation,
    /// <summary>
    /// Faultline, speculative page faults with freed frames cleared by a background worker
    /// (<see cref="FaultlineOptions.BackgroundZeroing"/>). Not in <c>all</c>; name it to compare.
    /// </summary>
    SpeculativeBackgroundZeroing,
    /// <summary>
    /// Faultline, per-VMA locks with fault-around off (<see cref="FaultlineOptions.FaultAroundBytes"/> one page): a read
    /// fault on a cached file page maps that page only. Not in <c>all</c>; name it to compare.
    /// </summary>
    VmaLockNoFaultAround,
    /// <summary>
    /// Faultline, per-VMA locks with swap readahead off (<see cref="SwapOptions.PageCluster"/> 0): a swap-in reads the
    /// faulting page only. Not in <c>all</c>; name it to compare.
    /// </summary>
    VmaLockNoSwapReadahead,
    /// <summary>
    /// Faultline, speculative page faults in a memory group whose limit is the whole guest RAM
    /// (<see cref="FaultlineOptions.MemoryLimitBytes"/>): every frame is charged and uncharged, the limit never hit, so
    /// beside <see cref="Speculative"/> it gives the charge's cost. Not in <c>all</c>; name it to compare.
    /// </summary>
    SpeculativeMemoryLimit,
}

/// <summary>Names on the command line and in reports.</summary>
internal static class PathNames
{
    /// <summary>Every path <c>all</c> selects, in report order.</summary>
    public static readonly PathKind[] All = [PathKind.MmapLock, PathKind.Speculative, PathKind.VmaLock, PathKind.Kernel];

    private static readonly PathKind[] Named = [.. All, PathKind.SpeculativeNoTableAllocation, PathKind.SpeculativeBackgroundZeroing, PathKind.VmaLockNoFaultAround,
        PathKind.VmaLockNoSwapReadahead, PathKind.SpeculativeMemoryLimit];

    /// <summary>The command-line and report name.</summary>
    public static string Name(PathKind path) => path switch
    {
        PathKind.MmapLock => "mmap-lock",
        PathKind.Speculative => "speculative",
        PathKind.VmaLock => "vma-lock",
        PathKind.Kernel => "kernel",
        PathKind.SpeculativeNoTableAllocation => "speculative-no-table-alloc",
        PathKind.SpeculativeBackgroundZeroing => "speculative-bg-zero",
        PathKind.VmaLockNoFaultAround => "vma-lock-no-fault-around",
        PathKind.VmaLockNoSwapReadahead => "vma-lock-no-swap-readahead",
        PathKind.SpeculativeMemoryLimit => "speculative-memcg",
        _ => throw new ArgumentOutOfRangeException(nameof(path)),
    };

    /// <summary>The report position of a path name (unknown names last).</summary>
    public static int Order(string name)
    {
        int index = Array.FindIndex(Named, p => Name(p) == name);
        return index < 0 ? Named.Length : index;
    }

    /// <summary>Parses a comma list of names or <c>all</c>.</summary>
    public static IReadOnlyList<PathKind> ParseList(string text)
    {
        var result = new List<PathKind>();
        foreach (string item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (item.Equals("all", StringComparison.OrdinalIgnoreCase))
            {
                result.AddRange(All);
                continue;
            }
            PathKind? match = Named.Cast<PathKind?>().FirstOrDefault(p => Name(p!.Value).Equals(item, StringComparison.OrdinalIgnoreCase));
            result.Add(match ?? throw new ArgumentException($"unknown path '{item}' (expected {string.Join(", ", Named.Select(Name))} or all)"));
        }
        return result.Distinct().ToList();
    }

    /// <summary>Faultline's fault path for a path that is not the kernel.</summary>
    public static FaultPath ToFaultPath(PathKind path) => path switch
    {
        PathKind.MmapLock => FaultPath.MmapLock,
        PathKind.Speculative or PathKind.SpeculativeNoTableAllocation or PathKind.SpeculativeBackgroundZeroing
            or PathKind.SpeculativeMemoryLimit => FaultPath.Speculative,
        PathKind.VmaLock or PathKind.VmaLockNoFaultAround or PathKind.VmaLockNoSwapReadahead => FaultPath.VmaLock,
        _ => throw new ArgumentOutOfRangeException(nameof(path), "the kernel path has no Faultline fault path"),
    };
}
