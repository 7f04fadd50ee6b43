namespace Faultline.Backing;

/// <summary>
/// The reverse map of a page-cache backing (the kernel's <c>i_mmap</c> under <c>i_mmap_rwsem</c>) and its file
/// reference count (<c>get_file</c>/<c>fput</c>): the VMAs mapping the backing, in every address space, each with the
/// zapper of its address space, so <c>unmap_mapping_range</c> and <c>folio_mkclean</c> reach every mapping of a page.
/// </summary>
/// <remarks>
/// <para>References: every linked VMA and every writer's hold counts one, and an open file counts one more (the
/// initial count); the last <see cref="Unlink"/> or <see cref="Unhold"/> runs the release callback once, outside the
/// mapping lock.</para>
/// <para>Lock order: the mapping lock comes after the VMA lock (and a file's inode lock) and before an anon_vma
/// family's lock and the PTE locks; <see cref="Zap"/> and <see cref="Clean"/> hold it across the zaps and their grace
/// periods. Every member is thread-safe.</para>
/// </remarks>
internal sealed class MappingSet
{
    private readonly List<(object Vma, IMappingZapper Zapper, ulong PageOffset, ulong Pages)> _mappings = [];
    private readonly object _mappingLock = new();
    private readonly Action _release;
    private int _references;
    private bool _released;

    /// <summary>
    /// A reverse map starting with <paramref name="references"/> references (1 for an open file, 0 for an object that
    /// lives only through its mappings); <paramref name="release"/> runs when the last one goes.
    /// </summary>
    public MappingSet(int references, Action release)
    {
        _references = references;
        _release = release;
    }

    /// <summary>VMAs linked now. A snapshot taken under the mapping lock.</summary>
    public int Count
    {
        get
        {
            lock (_mappingLock)
            {
                return _mappings.Count;
            }
        }
    }

    /// <summary><c>vma_link_file</c> plus <c>get_file</c>; see <see cref="IPageCacheBacking.Link"/>.</summary>
    public void Link(object vma, IMappingZapper zapper, ulong pageOffset, ulong pages)
    {
        lock (_mappingLock)
        {
            Debug.Assert(!_released, "a VMA linked to a released backing");
            _mappings.Add((vma, zapper, pageOffset, pages));
            _references++;
        }
    }

    /// <summary><c>get_file</c>: one more reference (a writer's hold across an edit, or an msync's across its writeback).</summary>
    public void Hold()
    {
        lock (_mappingLock)
        {
            Debug.Assert(!_released, "a hold on a released backing");
            _references++;
        }
    }

    /// <summary>Ends a <see cref="Hold"/> (or drops the initial reference); the last reference runs the release.</summary>
    public void Unhold() => DropReference(unlink: null);

    /// <summary><c>unlink_file_vma</c> plus <c>fput</c>.</summary>
    public void Unlink(object vma) => DropReference(vma);

    /// <summary>
    /// <c>unmap_mapping_range(…, even_cows=1)</c>: every entry of every linked VMA over pages
    /// [<paramref name="firstPageOffset"/>, <paramref name="endPageOffset"/>) is zapped, private copies included, and
    /// the TLBs flushed before the call returns.
    /// </summary>
    public void Zap(ulong firstPageOffset, ulong endPageOffset)
    {
        lock (_mappingLock)
        {
            foreach ((object vma, IMappingZapper zapper, ulong pageOffset, ulong pages) in _mappings)
            {
                ulong first = Math.Max(firstPageOffset, pageOffset), end = Math.Min(endPageOffset, pageOffset + pages);
                if (first < end)
                {
                    zapper.ZapMappedPages(vma, first, end);
                }
            }
        }
    }

    /// <summary>
    /// <c>folio_mkclean</c> over pages [<paramref name="firstPageOffset"/>, <paramref name="endPageOffset"/>): every
    /// linked VMA's entries mapping a page of <paramref name="owner"/> there are write-protected and cleaned, a dirty
    /// entry's state passing to its page, and the TLBs flushed, so the next store through any mapping faults and dirties
    /// the page again.
    /// </summary>
    public void Clean(ulong firstPageOffset, ulong endPageOffset, object owner)
    {
        lock (_mappingLock)
        {
            foreach ((object vma, IMappingZapper zapper, ulong pageOffset, ulong pages) in _mappings)
            {
                ulong first = Math.Max(firstPageOffset, pageOffset), end = Math.Min(endPageOffset, pageOffset + pages);
                if (first < end)
                {
                    zapper.CleanMappedPages(vma, first, end, owner);
                }
            }
        }
    }

    // fput: the link of `unlink` (if any) goes, and the last reference, link or hold, releases the backing.
    private void DropReference(object? unlink)
    {
        bool last;
        lock (_mappingLock)
        {
            if (unlink is not null)
            {
                int index = _mappings.FindIndex(m => ReferenceEquals(m.Vma, unlink));
                Debug.Assert(index >= 0, "unlink of a VMA never linked");
                _mappings.RemoveAt(index);
            }
            last = --_references == 0;
            _released |= last;
        }
        if (last)
        {
            _release();
        }
    }
}
