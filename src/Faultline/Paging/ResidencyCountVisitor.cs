using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// <c>smaps_pte_range</c> and <c>smaps_pmd_entry</c> as a walk: counts present, resident, referenced and dirty pages
/// and splits them into shared and private with their proportional share (<c>smaps_account</c>), reading each entry
/// once without its lock (a diagnostic snapshot).
/// </summary>
internal unsafe struct ResidencyCountVisitor : IPageRangeVisitor
{
    private readonly PageTable _table;
    private long _rss, _present, _referenced, _dirty;
    private long _sharedClean, _sharedDirty, _privateClean, _privateDirty, _pss, _pssDirty, _lazyFree, _anonHuge, _swap, _swapPss, _anonymous;

    /// <summary>A count over <paramref name="table"/>.</summary>
    public ResidencyCountVisitor(PageTable table) => _table = table;

    /// <summary>The counts so far.</summary>
    public readonly ResidentCounts Counts => new(_rss, _present, _referenced, _dirty)
    {
        SharedClean = _sharedClean,
        SharedDirty = _sharedDirty,
        PrivateClean = _privateClean,
        PrivateDirty = _privateDirty,
        ScaledPss = _pss,
        ScaledPssDirty = _pssDirty,
        LazyFree = _lazyFree,
        Anonymous = _anonymous,
        AnonHugePages = _anonHuge,
        Swap = _swap,
        ScaledSwapPss = _swapPss,
    };

    /// <summary>Counts the entries of one table.</summary>
    public void VisitPteTable(long pteTable, int firstIndex, int endIndex, ulong tableBase)
    {
        ulong* entries = _table.Entries(pteTable);
        for (int i = firstIndex; i < endIndex; i++)
        {
            // Acquire load: pairs with the PTE's release store (set_pte_at), as the lockless walk's reads do.
            Count(Volatile.Read(ref entries[i]), 1);
        }
    }

    /// <summary>Counts a huge PMD as the <see cref="PageGeometry.EntriesPerTable"/> pages it maps.</summary>
    public void VisitHugePmd(long pmdTable, int pmdIndex, ulong address) =>
        VisitHugePmdPart(pmdTable, pmdIndex, address, 0, PageGeometry.EntriesPerTable);

    /// <summary>Counts the pages of a huge PMD inside the range (<c>smaps_pmd_entry</c>, <c>AnonHugePages</c> included).</summary>
    public void VisitHugePmdPart(long pmdTable, int pmdIndex, ulong address, int firstIndex, int endIndex)
    {
        // Acquire load: pairs with the release store that installed the huge PMD.
        ulong entry = Volatile.Read(ref _table.Entries(pmdTable)[pmdIndex]);
        Count(entry, endIndex - firstIndex);
        if (Pte.MapsFrame(entry) && (entry & Pte.Special) == 0 && _table.Memory.Info(Pte.Frame(entry)).Kind == FrameKind.Anonymous)
        {
            _anonHuge += endIndex - firstIndex;
        }
    }

    private void Count(ulong entry, long pages)
    {
        if (!Pte.MapsFrame(entry))
        {
            if (Pte.IsSwap(entry))
            {
                // smaps_pte_entry: a swap entry counts towards Swap, and its share (the slot's users) towards SwapPss.
                _swap += pages;
                int users = Math.Max(1, _table.SwapEntries?.UseCount(SwapEntry.FromPte(entry)) ?? 1);
                _swapPss += ((long)pages * PageGeometry.PageSize << ResidentCounts.PssShift) / users;
            }
            return;
        }
        _present += pages;
        if ((entry & Pte.Special) != 0)
        {
            return;
        }
        _rss += pages;
        if ((entry & Pte.Accessed) != 0)
        {
            _referenced += pages;
        }
        long pfn = Pte.Frame(entry);
        PhysicalMemory memory = _table.Memory;
        bool dirty = (entry & Pte.Dirty) != 0 || memory.HasFlags(pfn, FrameFlags.Dirty);
        ref FrameInfo info = ref memory.Info(pfn);
        if (info.Kind == FrameKind.Anonymous)
        {
            // smaps_account's anon: an anonymous page, also a private file mapping's copy-on-write copy.
            _anonymous += pages;
        }
        // smaps_account: a frame with one reference is mapped once; otherwise its map count says how many share it.
        // Acquire reads, pairing with the Interlocked updates of fork, faults and the gather (a snapshot).
        int mapCount = Volatile.Read(ref info.RefCount) == 1 ? 1 : Math.Max(1, Volatile.Read(ref info.MapCount));
        bool shared = mapCount >= 2;
        long pss = ((long)pages * PageGeometry.PageSize << ResidentCounts.PssShift) / mapCount;
        _pss += pss;
        if (dirty)
        {
            _dirty += pages;
            _pssDirty += pss;
            if (shared)
            {
                _sharedDirty += pages;
            }
            else
            {
                _privateDirty += pages;
            }
        }
        else if (shared)
        {
            _sharedClean += pages;
        }
        else
        {
            _privateClean += pages;
        }
        // smaps_account: a lazily freeable frame counts while neither its PTE nor the frame is dirty.
        if (!dirty && memory.HasFlags(pfn, FrameFlags.LazyFree))
        {
            _lazyFree += pages;
        }
    }
}
