using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// <c>page_mkclean_one</c> over a range, as a walk: every entry mapping a frame of one page cache (the frame's
/// <see cref="FrameInfo.Mapping"/> is the given owner) loses its write permission and dirty bit, and a dirty entry
/// marks its frame dirty (<c>folio_mkclean</c> returning true makes writeback see the page dirty). Private copies
/// (anonymous frames) are left alone. Every entry that was writable is noted in the gather, whose flush ends the call.
/// </summary>
internal unsafe struct MkCleanVisitor : IPageRangeVisitor
{
    private readonly PageTable _table;
    private readonly MmuGather _gather;
    private readonly object _owner;

    /// <summary>A clean of the frames owned by <paramref name="owner"/>, flushed through <paramref name="gather"/>.</summary>
    public MkCleanVisitor(PageTable table, MmuGather gather, object owner)
    {
        _table = table;
        _gather = gather;
        _owner = owner;
    }

    /// <summary>Cleans the entries under the table's PTE lock.</summary>
    public void VisitPteTable(long pteTable, int firstIndex, int endIndex, ulong tableBase)
    {
        ref int ptl = ref _table.PteLock(pteTable);
        SpinWord.Enter(ref ptl);
        ulong* entries = _table.Entries(pteTable);
        for (int i = firstIndex; i < endIndex; i++)
        {
            Clean(ref entries[i], tableBase + ((ulong)i << PageGeometry.PageShift));
        }
        SpinWord.Exit(ref ptl);
    }

    /// <summary>Page-cache pages are never mapped by a huge PMD here: nothing to clean.</summary>
    public void VisitHugePmd(long pmdTable, int pmdIndex, ulong address)
    {
    }

    private void Clean(ref ulong slot, ulong address)
    {
        ulong entry = Volatile.Read(ref slot);
        if (!Pte.MapsFrame(entry) || (entry & Pte.Special) != 0 || (entry & (Pte.Writable | Pte.Dirty)) == 0
            || !ReferenceEquals(_table.Memory.Info(Pte.Frame(entry)).Mapping, _owner))
        {
            return;
        }
        while (true)
        {
            // A Cpu's TLB fill sets Accessed and Dirty with a CAS and no lock, so this is a CAS too (full fence; pairs
            // with that CAS): a dirty bit set before it is seen here, a fill that read the old entry fails and walks again.
            ulong seen = Interlocked.CompareExchange(ref slot, entry & ~(Pte.Writable | Pte.Dirty), entry);
            if (seen == entry)
            {
                break;
            }
            entry = seen;
        }
        if ((entry & Pte.Dirty) != 0)
        {
            // folio_mark_dirty: the store the entry recorded still has to be written back.
            _table.Memory.SetFlags(Pte.Frame(entry), FrameFlags.Dirty);
        }
        if ((entry & Pte.Writable) != 0)
        {
            _gather.NoteTranslationChange(address);
        }
    }
}
