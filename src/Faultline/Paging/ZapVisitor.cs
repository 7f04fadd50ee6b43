using Faultline.Concurrency;

namespace Faultline.Paging;

/// <summary>
/// <c>zap_pte_range</c> and <c>zap_huge_pmd</c> as a walk: clears every entry in the range and hands the frames it
/// mapped to the gather, counting the refcounted pages unmapped.
/// </summary>
internal unsafe struct ZapVisitor : IPageRangeVisitor
{
    private readonly PageTable _table;
    private readonly MmuGather _gather;
    private readonly ProbeSet _probes;

    /// <summary>A zap that gathers into <paramref name="gather"/>.</summary>
    public ZapVisitor(PageTable table, MmuGather gather, ProbeSet probes)
    {
        _table = table;
        _gather = gather;
        _probes = probes;
    }

    /// <summary>Refcounted (anonymous) pages unmapped so far.</summary>
    public long Unmapped { get; private set; }

    /// <summary>Swap entries cleared so far (<c>MM_SWAPENTS</c>).</summary>
    public long SwapEntriesFreed { get; private set; }

    /// <summary>Clears the entries under the table's PTE lock; a full batch is flushed with the lock held (<c>force_flush</c>).</summary>
    public void VisitPteTable(long pteTable, int firstIndex, int endIndex, ulong tableBase)
    {
        ref int ptl = ref _table.PteLock(pteTable);
        SpinWord.Enter(ref ptl);
        ulong* entries = _table.Entries(pteTable);
        for (int i = firstIndex; i < endIndex; i++)
        {
            ulong entry = entries[i];
            if (entry == 0)
            {
                continue;
            }
            Volatile.Write(ref entries[i], 0UL);
            _gather.NoteTranslationChange(tableBase + ((ulong)i << PageGeometry.PageShift));
            if ((entry & (Pte.Dirty | Pte.Special)) == Pte.Dirty && Pte.MapsFrame(entry)
                && _table.Memory.Info(Pte.Frame(entry)).Kind is Physical.FrameKind.Shmem or Physical.FrameKind.PageCache)
            {
                // zap_pte_range: a dirty PTE of a page-cache page passes its dirtiness to the page (folio_mark_dirty).
                _table.Memory.SetFlags(Pte.Frame(entry), Physical.FrameFlags.Dirty);
            }
            if (Pte.MapsFrame(entry) && (entry & Pte.Special) == 0 && _gather.RemoveMapping(Pte.Frame(entry)))
            {
                Unmapped++;
            }
            else if (Pte.IsSwap(entry))
            {
                // zap_nonpresent_ptes: free_swap_and_cache (munmap, exit, MADV_DONTNEED give their slots back).
                _table.SwapEntries?.Free(SwapEntry.FromPte(entry));
                SwapEntriesFreed++;
            }
            if (_gather.IsFull)
            {
                // force_flush: the TLB flush happens under the PTE lock, the frees after dropping it.
                _gather.FlushTlb(_probes);
                SpinWord.Exit(ref ptl);
                _gather.FreeGathered();
                SpinWord.Enter(ref ptl);
            }
        }
        SpinWord.Exit(ref ptl);
    }

    /// <summary>
    /// <c>zap_huge_pmd</c>: clears the huge PMD under <c>page_table_lock</c> (the kernel's <c>pmd_lock</c>), withdraws its
    /// deposited table and gathers its block (every frame's map count drops now, the head's reference after the flush).
    /// </summary>
    public void VisitHugePmd(long pmdTable, int pmdIndex, ulong address)
    {
        _table.EnterPageTableLock();
        ref ulong slot = ref _table.Entries(pmdTable)[pmdIndex];
        // Exchange: a TLB fill's accessed/dirty CAS cannot land after the clear.
        ulong entry = Interlocked.Exchange(ref slot, 0UL);
        _table.WithdrawDepositLocked(_gather);
        _table.ExitPageTableLock();
        _gather.NoteTranslationChange(address);
        _gather.NoteTranslationChange(address + PageGeometry.PmdSize - PageGeometry.PageSize);
        if (Pte.MapsFrame(entry) && (entry & Pte.Special) == 0)
        {
            _table.Memory.RemoveHugeTailMappings(Pte.Frame(entry));
        }
        if (Pte.MapsFrame(entry) && (entry & Pte.Special) == 0 && _gather.RemoveMapping(Pte.Frame(entry)))
        {
            Unmapped += PageGeometry.EntriesPerTable;
        }
        if (_gather.IsFull)
        {
            _gather.FlushTlb(_probes);
            _gather.FreeGathered();
        }
    }
}
