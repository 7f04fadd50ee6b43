namespace Faultline.Paging;

/// <summary>The page counts of a residency walk (the smaps fields).</summary>
/// <param name="Rss">Entries mapping a refcounted frame (smaps <c>Rss</c>).</param>
/// <param name="Present">Entries mapping any frame, the zero frame included (pagemap's present bit).</param>
/// <param name="Referenced">Refcounted entries with the accessed bit (smaps <c>Referenced</c>).</param>
/// <param name="Dirty">Refcounted entries that are dirty: the entry's dirty bit or the frame's (smaps <c>Pss_Dirty</c>'s pages).</param>
internal readonly record struct ResidentCounts(long Rss, long Present, long Referenced, long Dirty)
{
    /// <summary>Pages mapped by more than one entry and clean (smaps <c>Shared_Clean</c>).</summary>
    public long SharedClean { get; init; }
    /// <summary>Pages mapped by more than one entry and dirty (smaps <c>Shared_Dirty</c>).</summary>
    public long SharedDirty { get; init; }
    /// <summary>Pages this entry alone maps, clean (smaps <c>Private_Clean</c>).</summary>
    public long PrivateClean { get; init; }
    /// <summary>Pages this entry alone maps, dirty (smaps <c>Private_Dirty</c>).</summary>
    public long PrivateDirty { get; init; }
    /// <summary>Proportional set size in bytes scaled by 2^<see cref="PssShift"/> (each page's size ÷ its map count).</summary>
    public long ScaledPss { get; init; }
    /// <summary>The dirty part of <see cref="ScaledPss"/> (smaps <c>Pss_Dirty</c>).</summary>
    public long ScaledPssDirty { get; init; }
    /// <summary>Clean entries of lazily freeable frames (smaps <c>LazyFree</c>, after <c>MADV_FREE</c>).</summary>
    public long LazyFree { get; init; }
    /// <summary>Anonymous pages mapped by huge PMDs (smaps <c>AnonHugePages</c>, <c>smaps_pmd_entry</c>).</summary>
    public long AnonHugePages { get; init; }
    /// <summary>Swap entries (smaps <c>Swap</c>): pages of the range that are swapped out.</summary>
    public long Swap { get; init; }
    /// <summary>Swapped-out bytes scaled by 2^<see cref="PssShift"/>, each page's size ÷ the slot's users (smaps <c>SwapPss</c>).</summary>
    public long ScaledSwapPss { get; init; }

    /// <summary>Anonymous frames mapped (smaps <c>Anonymous</c>), a private file mapping's copies included.</summary>
    public long Anonymous { get; init; }

    /// <summary>The kernel's <c>PSS_SHIFT</c>: fixed-point bits that keep a page's share exact enough to sum.</summary>
    public const int PssShift = 12;
}
