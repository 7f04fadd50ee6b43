namespace Faultline.Paging;

/// <summary>Outcome of a lockless walk (the reasons a speculative walk aborts).</summary>
internal enum WalkStatus
{
    /// <summary>Reached a PTE table; the PTE was read.</summary>
    Ok,
    /// <summary>An upper level (pgd, pud) is empty.</summary>
    UpperNone,
    /// <summary>The PMD is empty: no PTE table yet.</summary>
    PmdNone,
    /// <summary>An upper entry is huge, a swap/migration entry, or otherwise not a table pointer.</summary>
    UpperBad,
    /// <summary>
    /// The PMD is a huge leaf (<c>pmd_trans_huge</c>): the PTE returned is the 4 KiB entry it implies for the address
    /// (<see cref="PageTable.HugeSubpageEntry"/>); <see cref="PteLocation.PteTable"/> is 0.
    /// </summary>
    HugePmd,
}
