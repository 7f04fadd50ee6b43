using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// <c>smaps_pte_range</c> and <c>smaps_pmd_entry</c> as a walk: counts present, resident, referenced and dirty
/// pages, reading each entry once without its lock (a diagnostic snapshot).
/// </summary>
internal unsafe struct ResidencyCountVisitor : IPageRangeVisitor
{
    private readonly PageTable _table;
    private long _rss, _present, _referenced, _dirty, _lazyFree;

    /// <summary>A count over <paramref name="table"/>.</summary>
    public ResidencyCountVisitor(PageTable table) => _table = table;

    /// <summary>The counts so far.</summary>
    public readonly ResidentCounts Counts => new(_rss, _present, _referenced, _dirty, _lazyFree);

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
        // Acquire load: pairs with the release store that installed the huge PMD.
        Count(Volatile.Read(ref _table.Entries(pmdTable)[pmdIndex]), PageGeometry.EntriesPerTable);

    private void Count(ulong entry, long pages)
    {
        if (!Pte.MapsFrame(entry))
        {
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
        if ((entry & Pte.Dirty) != 0)
        {
            _dirty += pages;
        }
        // smaps_account: a lazily freeable frame counts while neither its PTE nor the frame is dirty.
        else if (_table.Memory.HasFlags(Pte.Frame(entry), FrameFlags.LazyFree) && !_table.Memory.HasFlags(Pte.Frame(entry), FrameFlags.Dirty))
        {
            _lazyFree += pages;
        }
    }
}
