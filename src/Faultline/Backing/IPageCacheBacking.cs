namespace Faultline.Backing;

/// <summary>
/// A backing whose pages live in a page cache (the kernel's <c>address_space</c>): pages can be looked up without
/// faulting them in (<c>filemap_map_pages</c>' fault-around, <c>mincore_page</c>), and the backing keeps a reverse map
/// of the VMAs mapping it (<c>i_mmap</c>) so a hole punched in it is unmapped from every address space.
/// </summary>
/// <remarks>Every member is thread-safe. The lookups take no lock and may run on the speculative fault path.</remarks>
internal interface IPageCacheBacking : IBacking
{
    /// <summary>The file's device, minor number (the maps line's <c>MM:mm</c>).</summary>
    int DeviceMinor { get; }

    /// <summary>The file's device, major number (0 for shmem's internal mount).</summary>
    int DeviceMajor => 0;

    /// <summary>The file's inode number (the maps line's inode column).</summary>
    ulong Inode { get; }

    /// <summary>
    /// The cached page at <paramref name="pageOffset"/> with one reference for the caller, or false when none is
    /// cached (nothing is read in or allocated). Lock-free.
    /// </summary>
    bool TryGetCached(ulong pageOffset, out long pfn);

    /// <summary><c>mincore_page</c>: true when a page is cached at <paramref name="pageOffset"/>. Lock-free, a snapshot.</summary>
    bool IsCached(ulong pageOffset);

    /// <summary>
    /// True while <paramref name="pfn"/> is still the page at <paramref name="pageOffset"/>. A fault asks this under
    /// the PTE lock before installing a page it looked up: a hole punch removes the page before it zaps the PTEs
    /// (under the same locks), so a page installed after the check passed is zapped by the punch, and one checked
    /// after the removal is not installed (the kernel's fault holds the folio lock, which truncation waits for).
    /// </summary>
    bool IsStillCached(ulong pageOffset, long pfn);

    /// <summary>
    /// <c>vma_link_file</c> plus <c>get_file</c>: <paramref name="vma"/> of the address space behind
    /// <paramref name="zapper"/> maps pages [<paramref name="pageOffset"/>, +<paramref name="pages"/>). Called with
    /// that address space's mmap lock held for write.
    /// </summary>
    void Link(object vma, IMappingZapper zapper, ulong pageOffset, ulong pages);

    /// <summary>
    /// <c>unlink_file_vma</c> plus <c>fput</c>: <paramref name="vma"/> no longer maps the backing, before any table under
    /// it is freed. The last reference (links and holds) releases the backing's pages (their mapped copies stay until
    /// unmapped).
    /// </summary>
    void Unlink(object vma);

    /// <summary>
    /// <c>get_file</c> for an edit: a writer that is about to replace a VMA of the backing by its pieces (split, merge,
    /// protection change) keeps the backing alive between detaching the old VMA and attaching the new ones.
    /// </summary>
    void Hold();

    /// <summary>Ends a <see cref="Hold"/> (<c>fput</c>); the last reference releases the backing's pages.</summary>
    void Unhold();

    /// <summary>
    /// <c>fallocate(FALLOC_FL_PUNCH_HOLE)</c> over pages [<paramref name="firstPageOffset"/>,
    /// <paramref name="endPageOffset"/>): every page there leaves the cache and every mapping of it is zapped, in every
    /// address space; the next touch reads zeros.
    /// </summary>
    void PunchHole(ulong firstPageOffset, ulong endPageOffset);

    /// <summary>
    /// <c>vma_wants_writenotify</c> for a shared writable mapping: true when the backing must see each page's first
    /// store (a file whose dirty pages are written back), so clean pages are mapped read-only. False by default: shmem
    /// maps shared pages writable at once.
    /// </summary>
    bool WantsWriteNotify => false;
}
