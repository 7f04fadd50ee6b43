namespace Faultline.Paging;

/// <summary>
/// What a <see cref="PageRangeWalker"/> calls for each populated piece of a range (the kernel's <c>mm_walk_ops</c>:
/// <c>pte_entry</c> batched per table, <c>pmd_entry</c> for a huge PMD). Implemented by structs and passed by
/// reference, so a walk allocates no closure and the visitor accumulates its results in its own fields.
/// </summary>
internal interface IPageRangeVisitor
{
    /// <summary>
    /// A PTE table that intersects the range: entries [<paramref name="firstIndex"/>, <paramref name="endIndex"/>)
    /// lie in it; <paramref name="tableBase"/> is the virtual address that index 0 maps.
    /// </summary>
    void VisitPteTable(long pteTable, int firstIndex, int endIndex, ulong tableBase);

    /// <summary>
    /// A huge PMD (<c>pmd_trans_huge</c>): the entry at <paramref name="pmdIndex"/> of <paramref name="pmdTable"/>
    /// maps <see cref="PageGeometry.PmdSize"/> bytes at <paramref name="address"/> directly; the walk never descends
    /// into it. The range covers it whole.
    /// </summary>
    void VisitHugePmd(long pmdTable, int pmdIndex, ulong address);

    /// <summary>
    /// A huge PMD the range covers only in part: pages [<paramref name="firstIndex"/>, <paramref name="endIndex"/>) of
    /// the span at <paramref name="address"/>. Readers (pagemap, smaps) report those pages; an operation that changes
    /// entries splits such a PMD before it walks (<c>split_huge_pmd</c>), so reaching it is a caller's error.
    /// </summary>
    void VisitHugePmdPart(long pmdTable, int pmdIndex, ulong address, int firstIndex, int endIndex) =>
        throw new InvalidOperationException("a range cuts a huge PMD that was not split first");
}
