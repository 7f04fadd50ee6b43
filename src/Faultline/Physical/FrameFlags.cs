namespace Faultline.Physical;

/// <summary>
/// Per-frame state bits (the kernel's page flags that a page cache and COW need). Changed with Interlocked where more
/// than one thread may change them (see <see cref="PhysicalMemory.SetFlags"/>).
/// </summary>
[Flags]
internal enum FrameFlags
{
    /// <summary>No bit set.</summary>
    None = 0,
    /// <summary><c>PG_locked</c>: someone is filling or writing back the frame.</summary>
    Locked = 1 << 0,
    /// <summary><c>PG_uptodate</c>: the contents are valid.</summary>
    Uptodate = 1 << 1,
    /// <summary><c>PG_dirty</c>: written through a shared mapping; the backing must write it back.</summary>
    Dirty = 1 << 2,
    /// <summary>
    /// <c>PageAnonExclusive</c>: an anonymous frame mapped by exactly one page-table entry of one address space, so a
    /// write fault may reuse it; cleared when it gets shared.
    /// </summary>
    AnonExclusive = 1 << 3,
    /// <summary>
    /// A lazily freeable anonymous frame (<c>MADV_FREE</c>'s cleared <c>PG_swapbacked</c>): reclaim may drop it while its
    /// PTE stays clean; a write dirties the PTE and keeps it.
    /// </summary>
    LazyFree = 1 << 4,
    /// <summary>
    /// <c>PG_head</c>: the first frame of a huge (order-9) block from <see cref="PhysicalMemory.TryAllocateHuge"/>; it
    /// holds the block's reference count.
    /// </summary>
    HugeHead = 1 << 5,
    /// <summary>A tail frame of a huge block (<c>PageTail</c>): no references of its own; the head's count covers it.</summary>
    HugeTail = 1 << 6,
    /// <summary><c>PG_writeback</c>: a page-cache frame being written back to its file; it is clean meanwhile.</summary>
    Writeback = 1 << 7,
    /// <summary><c>PG_lru</c>: the frame is on one of the arena's LRU lists (<see cref="FrameLru"/>), not isolated.</summary>
    Lru = 1 << 8,
    /// <summary><c>PG_active</c>: the frame is on (or goes back to) the active list.</summary>
    Active = 1 << 9,
    /// <summary>
    /// <c>PG_swapcache</c>: the frame is in a swap area's cache under <see cref="FrameInfo.SwapEntry"/> (being written
    /// out, just read in, or shared by the entries of several address spaces).
    /// </summary>
    SwapCache = 1 << 10,
    /// <summary>
    /// <c>PG_readahead</c> on a swap-cache frame: read ahead of demand and not yet found by a fault; the first fault that
    /// finds it clears the bit and counts a readahead hit.
    /// </summary>
    Readahead = 1 << 11,
}
