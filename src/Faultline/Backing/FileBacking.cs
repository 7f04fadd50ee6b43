using Faultline.Physical;

namespace Faultline.Backing;

/// <summary>
/// A guest file as the backing of its mappings (<c>vm_file</c> with <c>generic_file_vm_ops</c>: <c>filemap_fault</c>,
/// <c>filemap_map_pages</c>, <c>filemap_page_mkwrite</c>): faults find the file's pages in its <see cref="PageCache"/>,
/// and the cache's reverse map (<see cref="PageCache.Mappings"/>) links every VMA mapping the file, so a truncate, a
/// hole punch and writeback reach each mapping of a page in every address space.
/// </summary>
/// <remarks>
/// <para>A file with a store (a host file) wants write notification (<c>vma_wants_writenotify</c>: the page cache does
/// dirty accounting): a shared writable mapping maps clean pages read-only, so the first store faults and dirties the
/// page. A file without one (tmpfs, memfd) is shmem and maps shared pages writable at once, as Linux does.</para>
/// <para>Every member is thread-safe; the lookups take no lock and run on the speculative path.</para>
/// </remarks>
internal sealed class FileBacking : IPageCacheBacking
{
    private readonly PageCache _cache;

    /// <summary>
    /// The backing of a file over <paramref name="cache"/>, named <paramref name="mapsName"/> in the maps, on device
    /// <paramref name="deviceMajor"/>:<paramref name="deviceMinor"/> with inode <paramref name="inode"/>.
    /// </summary>
    public FileBacking(PageCache cache, string mapsName, int deviceMajor, int deviceMinor, ulong inode)
    {
        _cache = cache;
        MapsName = mapsName;
        DeviceMajor = deviceMajor;
        DeviceMinor = deviceMinor;
        Inode = inode;
    }

    /// <summary>The file's page cache.</summary>
    public PageCache Cache => _cache;

    /// <inheritdoc />
    public int DeviceMajor { get; }

    /// <inheritdoc />
    public int DeviceMinor { get; }

    /// <inheritdoc />
    public ulong Inode { get; }

    /// <inheritdoc />
    public bool IsAnonymous => false;

    /// <inheritdoc />
    /// <remarks>
    /// True: <c>filemap_fault</c> may take part once a page lock or I/O it would sleep on answers RETRY instead (the SPF
    /// v2 review, 2017-08); <see cref="Fault(ulong, AccessKind, bool, out long)"/> does exactly that when asked speculatively.
    /// </remarks>
    public bool IsSpeculativeSafe => true;

    /// <inheritdoc />
    public string MapsName { get; }

    /// <inheritdoc />
    public bool WantsWriteNotify => _cache.CanWriteBack;

    /// <inheritdoc />
    /// <remarks>
    /// The classic path reads a missing page in (and its neighbours, read-around); the speculative path never does I/O
    /// or waits on a page lock (RETRY, and the mmap-lock path reads it).
    /// </remarks>
    public BackingFaultStatus Fault(ulong pageOffset, AccessKind access, bool speculative, out long pfn) =>
        _cache.FaultPage(pageOffset, speculative, mayReadIn: !speculative, ReadAround.Around, out pfn);

    /// <summary>
    /// <see cref="Fault(ulong, AccessKind, bool, out long)"/> as the fault handler asks it, knowing the path and the VMA's access advice: a fault under the
    /// VMA lock maps cached pages only and answers RETRY for anything that needs I/O (<paramref name="mayReadIn"/>
    /// false), as <c>filemap_fault</c> under the VMA lock falls back to the mmap-lock path; a read-in brings the
    /// neighbours <paramref name="around"/> names.
    /// </summary>
    public BackingFaultStatus Fault(ulong pageOffset, bool speculative, bool mayReadIn, ReadAround around, out long pfn) =>
        _cache.FaultPage(pageOffset, speculative, mayReadIn && !speculative, around, out pfn);

    /// <inheritdoc />
    /// <remarks>Only pages fault-around may map: uptodate, unlocked and inside the file.</remarks>
    public bool TryGetCached(ulong pageOffset, out long pfn) => _cache.TryGetMappable(pageOffset, out pfn);

    /// <inheritdoc />
    public bool IsCached(ulong pageOffset) => _cache.IsCached(pageOffset);

    /// <inheritdoc />
    public bool IsStillCached(ulong pageOffset, long pfn) => _cache.IsStillMapped(pageOffset, pfn);

    /// <inheritdoc />
    public void Opened(ulong pageOffset, ulong pages)
    {
    }

    /// <inheritdoc />
    public void Closed(ulong pageOffset, ulong pages)
    {
    }

    /// <inheritdoc />
    /// <remarks>A file mapping splits anywhere.</remarks>
    public bool MaySplit(ulong pageOffset, ulong pages, ulong splitPageOffset) => true;

    /// <inheritdoc />
    public void Link(object vma, IMappingZapper zapper, ulong pageOffset, ulong pages) => _cache.Mappings.Link(vma, zapper, pageOffset, pages);

    /// <inheritdoc />
    public void Unlink(object vma) => _cache.Mappings.Unlink(vma);

    /// <inheritdoc />
    public void Hold() => _cache.Mappings.Hold();

    /// <inheritdoc />
    public void Unhold() => _cache.Mappings.Unhold();

    /// <inheritdoc />
    public void PunchHole(ulong firstPageOffset, ulong endPageOffset) => _cache.PunchHole(firstPageOffset, endPageOffset);

    /// <summary>True when <paramref name="memory"/> is the guest RAM the file's pages live in (a mapping must be of it).</summary>
    public bool SharesMemory(PhysicalMemory memory) => _cache.Memory == memory;
}
