namespace Faultline.Backing;

/// <summary>
/// The address-space side of a backing's reverse map (<c>i_mmap</c>): what <c>unmap_mapping_range</c> calls for each
/// VMA mapping a range of the backing (<c>zap_page_range_single</c>). One per address space.
/// </summary>
/// <remarks>
/// Called with the backing's mapping lock held (<c>i_mmap_rwsem</c>), which keeps the VMA linked, so the page tables
/// under it stay: a VMA is unlinked (under that lock) before any table under it can be freed. The call takes PTE
/// locks and may wait for a grace period of its address space; it takes no mmap lock.
/// </remarks>
internal interface IMappingZapper
{
    /// <summary>
    /// Clears every entry of <paramref name="vma"/> (a VMA this zapper linked) mapping pages
    /// [<paramref name="firstPageOffset"/>, <paramref name="endPageOffset"/>) of the backing, flushing the TLBs
    /// before the mappings' references go.
    /// </summary>
    void ZapMappedPages(object vma, ulong firstPageOffset, ulong endPageOffset);

    /// <summary>
    /// <c>folio_mkclean</c> (<c>page_mkclean_one</c> for each page): every entry of <paramref name="vma"/> mapping a page
    /// of <paramref name="owner"/> among pages [<paramref name="firstPageOffset"/>, <paramref name="endPageOffset"/>) is
    /// write-protected and cleaned, a dirty entry marking its page dirty, and the TLBs are flushed before the call returns.
    /// </summary>
    void CleanMappedPages(object vma, ulong firstPageOffset, ulong endPageOffset, object owner);
}
