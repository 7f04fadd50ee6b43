using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// <c>madvise_free_pte_range</c> as a walk: every anonymous frame mapped once in the range is marked lazily freeable
/// and its PTE made clean and old, so a later write dirties it again (the reason such a page must be kept). Frames
/// mapped more than once and the zero frame are left alone, as the kernel leaves them.
/// </summary>
internal unsafe struct LazyFreeVisitor : IPageRangeVisitor
{
    private readonly PageTable _table;
    private readonly PhysicalMemory _memory;
    private readonly MmuGather _gather;

    /// <summary>A walk noting the cleaned translations in <paramref name="gather"/> (a write must walk again to dirty them).</summary>
    public LazyFreeVisitor(PageTable table, MmuGather gather)
    {
        _table = table;
        _memory = table.Memory;
        _gather = gather;
    }

    /// <summary>Marks the entries under the table's PTE lock.</summary>
    public void VisitPteTable(long pteTable, int firstIndex, int endIndex, ulong tableBase)
    {
        ref int ptl = ref _table.PteLock(pteTable);
        SpinWord.Enter(ref ptl);
        ulong* entries = _table.Entries(pteTable);
        for (int i = firstIndex; i < endIndex; i++)
        {
            ulong entry = entries[i];
            // pte_present: a PROT_NONE entry maps its frame too and is cleaned like any other.
            if (!Pte.MapsFrame(entry) || (entry & Pte.Special) != 0)
            {
                continue;
            }
            long pfn = Pte.Frame(entry);
            ref FrameInfo info = ref _memory.Info(pfn);
            // Acquire read; pairs with the Interlocked map-count changes of fault, zap and fork.
            if (info.Kind != FrameKind.Anonymous || Volatile.Read(ref info.MapCount) != 1)
            {
                continue;
            }
            _memory.ClearFlags(pfn, FrameFlags.Dirty);
            _memory.SetFlags(pfn, FrameFlags.LazyFree);
            if ((entry & (Pte.Accessed | Pte.Dirty)) != 0)
            {
                // A Cpu's TLB fill sets Accessed and Dirty with a CAS and no lock, so the clean is a CAS too (full fence;
                // pairs with that CAS and with the fill's acquire read of the entry); the gather's flush then makes
                // every Cpu drop a translation that let it write without setting Dirty.
                while (true)
                {
                    ulong seen = Interlocked.CompareExchange(ref entries[i], entry & ~(Pte.Accessed | Pte.Dirty), entry);
                    if (seen == entry)
                    {
                        break;
                    }
                    entry = seen;
                }
                _gather.NoteTranslationChange(tableBase + ((ulong)i << PageGeometry.PageShift));
            }
        }
        SpinWord.Exit(ref ptl);
    }

    /// <summary>
    /// <c>madvise_free_huge_pmd</c> over a whole huge PMD: an anonymous block mapped once has every frame marked lazily
    /// freeable and the PMD cleaned and made old, under <c>page_table_lock</c> (a part was split before the walk).
    /// </summary>
    public void VisitHugePmd(long pmdTable, int pmdIndex, ulong address)
    {
        _table.EnterPageTableLock();
        ref ulong slot = ref _table.Entries(pmdTable)[pmdIndex];
        ulong entry = Volatile.Read(ref slot);
        long head = Pte.Frame(entry);
        // Acquire read; pairs with the Interlocked map-count changes of fault, zap and fork.
        if (Pte.MapsFrame(entry) && (entry & Pte.Special) == 0 && _memory.Info(head).Kind == FrameKind.Anonymous
            && Volatile.Read(ref _memory.Info(head).MapCount) == 1)
        {
            for (long pfn = head; pfn < head + PhysicalMemory.HugeFrames; pfn++)
            {
                _memory.ClearFlags(pfn, FrameFlags.Dirty);
                _memory.SetFlags(pfn, FrameFlags.LazyFree);
            }
            // A CAS, as for a PTE: a TLB fill sets accessed and dirty on the PMD without the lock.
            while ((entry & (Pte.Accessed | Pte.Dirty)) != 0)
            {
                ulong seen = Interlocked.CompareExchange(ref slot, entry & ~(Pte.Accessed | Pte.Dirty), entry);
                if (seen == entry)
                {
                    _gather.NoteTranslationChange(address);
                    _gather.NoteTranslationChange(address + PageGeometry.PmdSize - PageGeometry.PageSize);
                    break;
                }
                entry = seen;
            }
        }
        _table.ExitPageTableLock();
    }
}
