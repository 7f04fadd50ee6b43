namespace Faultline.Paging;

/// <summary>
/// What the page-table walkers of this layer ask of the swap areas above it when they meet a swap entry: a zap drops
/// the entry's reference (<c>free_swap_and_cache</c>), a fork takes one more (<c>swap_duplicate</c>).
/// </summary>
/// <remarks>Thread-safe; both are called with the PTE lock of the entry held, so an implementation takes only leaf locks.</remarks>
internal interface ISwapEntries
{
    /// <summary><c>free_swap_and_cache</c>: one page-table entry referencing <paramref name="entry"/> went away.</summary>
    void Free(SwapEntry entry);

    /// <summary><c>swap_duplicate</c>: one more page-table entry references <paramref name="entry"/> (fork).</summary>
    void Duplicate(SwapEntry entry);

    /// <summary><c>swp_swapcount</c>: page-table entries referencing <paramref name="entry"/> now (a snapshot; at least 1 for a live entry).</summary>
    int UseCount(SwapEntry entry);
}
