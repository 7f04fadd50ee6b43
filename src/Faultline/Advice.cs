namespace Faultline;

/// <summary>
/// <c>madvise</c> advice (<c>MADV_*</c>, Linux values). Values Faultline does not implement (KSM's
/// <c>MADV_MERGEABLE</c>, <c>MADV_COLLAPSE</c>, guard regions, memory-failure injection) are refused with EINVAL, as a
/// kernel built without them refuses them.
/// </summary>
public enum Advice
{
    /// <summary><c>MADV_NORMAL</c>: clears <see cref="Random"/> and <see cref="Sequential"/>.</summary>
    Normal = 0,
    /// <summary><c>MADV_RANDOM</c>: <c>VM_RAND_READ</c> (no readahead).</summary>
    Random = 1,
    /// <summary><c>MADV_SEQUENTIAL</c>: <c>VM_SEQ_READ</c>.</summary>
    Sequential = 2,
    /// <summary><c>MADV_WILLNEED</c>: accepted; swapped-out anonymous pages are not read ahead (they come back on their fault).</summary>
    WillNeed = 3,
    /// <summary><c>MADV_DONTNEED</c>: drops the pages; the next touch reads zeros. EINVAL on locked memory.</summary>
    DontNeed = 4,
    /// <summary>
    /// <c>MADV_FREE</c>: private anonymous pages become lazily freeable (clean, smaps <c>LazyFree</c>); with a swap area
    /// (<see cref="FaultlineOptions.Swap"/>) reclaim discards them instead of writing them (they read back as zeros),
    /// and a write before that keeps them.
    /// </summary>
    Free = 8,
    /// <summary><c>MADV_REMOVE</c>: punches a hole in shared memory; EINVAL on private anonymous memory.</summary>
    Remove = 9,
    /// <summary><c>MADV_DONTFORK</c>: <c>VM_DONTCOPY</c>, not inherited by a fork's child.</summary>
    DontFork = 10,
    /// <summary><c>MADV_DOFORK</c>: clears <see cref="DontFork"/>.</summary>
    DoFork = 11,
    /// <summary><c>MADV_HUGEPAGE</c>: <c>VM_HUGEPAGE</c>, clearing <c>VM_NOHUGEPAGE</c>.</summary>
    HugePage = 14,
    /// <summary><c>MADV_NOHUGEPAGE</c>: <c>VM_NOHUGEPAGE</c>, clearing <c>VM_HUGEPAGE</c>.</summary>
    NoHugePage = 15,
    /// <summary><c>MADV_DONTDUMP</c>: <c>VM_DONTDUMP</c>.</summary>
    DontDump = 16,
    /// <summary><c>MADV_DODUMP</c>: clears <see cref="DontDump"/>.</summary>
    DoDump = 17,
    /// <summary><c>MADV_WIPEONFORK</c>: <c>VM_WIPEONFORK</c>, private anonymous memory only (EINVAL otherwise).</summary>
    WipeOnFork = 18,
    /// <summary><c>MADV_KEEPONFORK</c>: clears <see cref="WipeOnFork"/>.</summary>
    KeepOnFork = 19,
    /// <summary>
    /// <c>MADV_COLD</c>: EINVAL on locked memory; with a swap area, private pages mapped once lose their Accessed bits and
    /// move to the inactive list, so reclaim takes them first; without one, no effect.
    /// </summary>
    Cold = 20,
    /// <summary>
    /// <c>MADV_PAGEOUT</c>: EINVAL on locked memory; with a swap area, private pages mapped once are reclaimed now
    /// (written to the area, or discarded if lazily freed and clean); without one, no effect.
    /// </summary>
    PageOut = 21,
    /// <summary><c>MADV_POPULATE_READ</c>: read-faults the range in; EINVAL where not readable, ENOMEM over a hole, EFAULT if a fault fails.</summary>
    PopulateRead = 22,
    /// <summary><c>MADV_POPULATE_WRITE</c>: write-faults the range in; EINVAL where not writable, ENOMEM over a hole, EFAULT if a fault fails.</summary>
    PopulateWrite = 23,
    /// <summary><c>MADV_DONTNEED_LOCKED</c>: <see cref="DontNeed"/> that locked memory allows too.</summary>
    DontNeedLocked = 24,
    /// <summary>
    /// <c>MADV_COLLAPSE</c> (Linux 6.1): collapses every 2 MiB block inside the range into a huge page now, whatever the
    /// transparent-huge-page mode; EINVAL on memory that may not hold huge pages, ENOMEM over a hole or without a free
    /// huge block, EAGAIN when a page is pinned, EINVAL when a block has nothing writable to collapse.
    /// </summary>
    Collapse = 25,
}
