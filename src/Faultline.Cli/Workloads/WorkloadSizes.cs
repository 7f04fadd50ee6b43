namespace Faultline.Cli.Workloads;

/// <summary>Sizes shared by the workloads.</summary>
internal static class WorkloadSizes
{
    /// <summary>Bytes in a page.</summary>
    public const ulong Page = 4096;

    /// <summary>will-it-scale's per-thread region: 128 MiB.</summary>
    public const ulong Region = 128UL << 20;

    /// <summary>Pages in <see cref="Region"/>.</summary>
    public const long RegionPages = (long)(Region / Page);

    /// <summary>The fork workloads' region when <c>--fork-mib</c> is not given: 256 MiB.</summary>
    public const int ForkRegionMib = 256;

    /// <summary>A per-iteration salt that differs by worker and iteration.</summary>
    public static long Salt(int worker, long iteration) => ((long)worker << 48) ^ (iteration * 0x5DEECE66DL) ^ 0x1234_5678;
}
