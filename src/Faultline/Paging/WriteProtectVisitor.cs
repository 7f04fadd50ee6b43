using Faultline.Concurrency;

namespace Faultline.Paging;

/// <summary>
/// The entry rewrite behind write tracking, as a walk: <c>clear_soft_dirty</c> (clear <see cref="Pte.SoftDirty"/>
/// and write-protect), the dirty log's get-and-clear (report each entry written since it was last armed, then arm it
/// with <see cref="Pte.WriteTracked"/>, the way <c>PAGEMAP_SCAN</c>'s <c>PM_SCAN_WP_MATCHING</c> re-arms
/// <c>PAGE_IS_WRITTEN</c> pages) and a write watch's arming or disarming (<see cref="Pte.WriteWatched"/>). Every entry
/// that loses write permission is noted in the gather, whose one flush at the end covers the whole walk.
/// </summary>
internal unsafe struct WriteProtectVisitor : IPageRangeVisitor
{
    private readonly PageTable _table;
    private readonly MmuGather _gather;
    private readonly ulong _clear;
    private readonly ulong _set;
    private readonly bool _writeProtect;
    private readonly ulong* _bitmap;
    private readonly ulong _bitmapBase;

    /// <summary>
    /// A rewrite clearing <paramref name="clear"/>, setting <paramref name="set"/> and, with
    /// <paramref name="writeProtect"/>, the write permission of every entry mapping a frame. With a non-null
    /// <paramref name="bitmap"/> each entry written since its last arming (dirty and not <see cref="Pte.WriteTracked"/>)
    /// sets bit (page − <paramref name="bitmapBase"/>) first.
    /// </summary>
    public WriteProtectVisitor(PageTable table, MmuGather gather, ulong clear, ulong set, bool writeProtect, ulong* bitmap, ulong bitmapBase)
    {
        _table = table;
        _gather = gather;
        _clear = clear;
        _set = set;
        _writeProtect = writeProtect;
        _bitmap = bitmap;
        _bitmapBase = bitmapBase;
    }

    /// <summary>Pages reported written.</summary>
    public long Written;

    /// <summary>Rewrites the entries under the table's PTE lock.</summary>
    public void VisitPteTable(long pteTable, int firstIndex, int endIndex, ulong tableBase)
    {
        ref int ptl = ref _table.PteLock(pteTable);
        SpinWord.Enter(ref ptl);
        ulong* entries = _table.Entries(pteTable);
        for (int i = firstIndex; i < endIndex; i++)
        {
            ulong address = tableBase + ((ulong)i << PageGeometry.PageShift);
            Rewrite(ref entries[i], address, 1);
        }
        SpinWord.Exit(ref ptl);
    }

    /// <summary>Rewrites a huge PMD under <c>page_table_lock</c>, keeping it huge; it reports all its pages alike.</summary>
    public void VisitHugePmd(long pmdTable, int pmdIndex, ulong address)
    {
        _table.EnterPageTableLock();
        Rewrite(ref _table.Entries(pmdTable)[pmdIndex], address, PageGeometry.EntriesPerTable);
        _table.ExitPageTableLock();
    }

    private void Rewrite(ref ulong slot, ulong address, int pages)
    {
        ulong entry = Volatile.Read(ref slot);
        if (!Pte.MapsFrame(entry))
        {
            if (Pte.IsSwap(entry) && (_clear & Pte.SoftDirty) != 0 && (entry & Pte.SwapSoftDirty) != 0)
            {
                // pte_swp_clear_soft_dirty: a swap entry keeps its soft-dirty bit in bit 1, as x86 does.
                Volatile.Write(ref slot, entry & ~Pte.SwapSoftDirty);
            }
            return;
        }
        ulong keepWrite = _writeProtect ? ~Pte.Writable : ~0UL;
        while (true)
        {
            ulong updated = ((entry & ~_clear) | _set) & keepWrite;
            if (updated == entry)
            {
                break;
            }
            // A Cpu's TLB fill sets Accessed and Dirty with a CAS and no lock, so this rewrite is a CAS too (full
            // fence; pairs with that CAS and the fill's acquire read): the entry reported below is exactly the one
            // replaced, so a dirty bit set meanwhile is reported, and a fill that read the old entry fails its CAS and
            // walks again.
            ulong seen = Interlocked.CompareExchange(ref slot, updated, entry);
            if (seen == entry)
            {
                break;
            }
            entry = seen;
        }
        if (_bitmap != null && (entry & (Pte.Dirty | Pte.WriteTracked)) == Pte.Dirty)
        {
            ulong first = (address >> PageGeometry.PageShift) - _bitmapBase;
            for (ulong page = first; page < first + (ulong)pages; page++)
            {
                _bitmap[page >> 6] |= 1UL << (int)(page & 63);
            }
            Written += pages;
        }
        if ((entry & Pte.Writable) != 0 && _writeProtect)
        {
            _gather.NoteTranslationChange(address);
            if (pages > 1)
            {
                _gather.NoteTranslationChange(address + PageGeometry.PmdSize - PageGeometry.PageSize);
            }
        }
    }
}
