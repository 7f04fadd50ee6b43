using Faultline.Mm;

namespace Faultline;

/// <summary>
/// A swap area for guest RAM (<c>swapon</c>): with one, anonymous pages are reclaimed to it when free frames run low
/// (a background reclaimer between the watermarks, direct reclaim when a fault finds no frame) instead of the fault
/// failing with <see cref="GuestOutOfMemoryException"/>; <see cref="Advice.Cold"/> and <see cref="Advice.PageOut"/>
/// act, and <see cref="Advice.Free"/>d pages are discarded while clean. Set it on <see cref="FaultlineOptions.Swap"/>.
/// </summary>
/// <remarks>
/// An immutable record. The area belongs to the guest RAM: a forked child shares its parent's, and it is closed when the
/// last address space over that RAM is disposed.
/// </remarks>
public sealed record SwapOptions
{
    /// <summary>The kind of area. Default <see cref="SwapAreaKind.Compressed"/>.</summary>
    public SwapAreaKind Kind { get; init; } = SwapAreaKind.Compressed;

    /// <summary>The area's size in bytes, a multiple of 4 KiB and at least two pages (the first page is never used, as a swap header). Default 256 MiB.</summary>
    public long SizeBytes { get; init; } = 256L << 20;

    /// <summary>For <see cref="SwapAreaKind.File"/>: the file to create (overwritten). Default: a new file in the temporary directory.</summary>
    public string? FilePath { get; init; }

    /// <summary>
    /// <c>low_wmark_pages</c>: when an allocation leaves fewer free frames than this, the background reclaimer wakes.
    /// 0 (the default) chooses 1/32 of guest RAM, at least 128 frames (two Cpus' frame caches) and at most a quarter of it.
    /// </summary>
    public int LowWatermarkPages { get; init; }

    /// <summary><c>high_wmark_pages</c>: the background reclaimer works until this many frames are free. 0 (the default) chooses twice the low watermark.</summary>
    public int HighWatermarkPages { get; init; }

    /// <summary>Run the background reclaimer (<c>kswapd</c>). Default true; when false only direct reclaim and MADV_PAGEOUT reclaim.</summary>
    public bool BackgroundReclaim { get; init; } = true;

    /// <summary>
    /// <c>/proc/sys/vm/page-cluster</c>: a swap-in reads up to <c>2^PageCluster</c> pages around the faulting one into the
    /// swap cache (VMA-based readahead, the window adapting to how many of them faults then use); 0 reads only the
    /// faulting page. In [0, <see cref="MaxPageCluster"/>]; default 3 (8 pages), Linux's.
    /// </summary>
    public int PageCluster { get; init; } = 3;

    /// <summary>The largest <see cref="PageCluster"/> (<c>SWAP_RA_ORDER_CEILING</c> on 64-bit kernels).</summary>
    public const int MaxPageCluster = 5;

    // The inner layers' copy of these options, checked; null when there is no swap.
    internal static SwapSettings? ToSettings(SwapOptions? options, int frames)
    {
        if (options is null)
        {
            return null;
        }
        if (!Enum.IsDefined(options.Kind))
        {
            throw new ArgumentOutOfRangeException(nameof(options), "Swap.Kind must be Compressed or File");
        }
        if (options.SizeBytes < 2 * PageGeometry.PageSize || ((ulong)options.SizeBytes & PageGeometry.PageOffsetMask) != 0
            || options.SizeBytes / PageGeometry.PageSize > Paging.SwapEntry.MaxOffset || options.SizeBytes / PageGeometry.PageSize > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "Swap.SizeBytes must be a multiple of 4 KiB, at least two pages");
        }
        if (options.LowWatermarkPages < 0 || options.HighWatermarkPages < 0 || options.LowWatermarkPages >= frames
            || options.HighWatermarkPages >= frames)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "Swap watermarks must lie between 0 and the frame count");
        }
        if (options.PageCluster is < 0 or > MaxPageCluster)
        {
            throw new ArgumentOutOfRangeException(nameof(options), $"Swap.PageCluster must lie in [0, {MaxPageCluster}]");
        }
        int low = options.LowWatermarkPages > 0 ? options.LowWatermarkPages : Math.Min(frames / 4, Math.Max(128, frames / 32));
        int high = options.HighWatermarkPages > 0 ? Math.Max(low, options.HighWatermarkPages) : Math.Min(frames - 1, 2 * low);
        string? path = options.Kind == SwapAreaKind.File
            ? options.FilePath ?? Path.Combine(Path.GetTempPath(), $"faultline-swap-{Environment.ProcessId}-{Guid.NewGuid():N}")
            : null;
        return new SwapSettings(path, options.SizeBytes / PageGeometry.PageSize, low, high, options.BackgroundReclaim,
            1 << options.PageCluster);
    }
}
