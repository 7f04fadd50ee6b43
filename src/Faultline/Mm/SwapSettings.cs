namespace Faultline.Mm;

/// <summary>The swap area an arena gets (from the public swap options, checked).</summary>
/// <param name="FilePath">The swap file to create, or null for a compressed in-memory area.</param>
/// <param name="Slots">Page slots in the area, slot 0 included.</param>
/// <param name="LowWatermark"><c>low_wmark_pages</c>.</param>
/// <param name="HighWatermark"><c>high_wmark_pages</c>.</param>
/// <param name="BackgroundReclaim">Run <c>kswapd</c>.</param>
/// <param name="ReadaheadPages">The largest swap readahead window, <c>1 &lt;&lt; page_cluster</c> pages (1: none).</param>
internal sealed record SwapSettings(string? FilePath, long Slots, int LowWatermark, int HighWatermark, bool BackgroundReclaim,
    int ReadaheadPages);
