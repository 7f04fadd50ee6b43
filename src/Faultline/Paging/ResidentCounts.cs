namespace Faultline.Paging;

/// <summary>The page counts of a residency walk (the smaps fields).</summary>
/// <param name="Rss">Entries mapping a refcounted frame (smaps <c>Rss</c>).</param>
/// <param name="Present">Entries mapping any frame, the zero frame included (pagemap's present bit).</param>
/// <param name="Referenced">Refcounted entries with the accessed bit (smaps <c>Referenced</c>).</param>
/// <param name="Dirty">Refcounted entries with the dirty bit (smaps <c>Private_Dirty</c>).</param>
/// <param name="LazyFree">Clean entries of lazily freeable frames (smaps <c>LazyFree</c>, after <c>MADV_FREE</c>).</param>
internal readonly record struct ResidentCounts(long Rss, long Present, long Referenced, long Dirty, long LazyFree);
