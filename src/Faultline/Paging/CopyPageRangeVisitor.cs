using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// <c>copy_page_range</c> as a walk of the parent's table (<c>copy_pte_range</c>, <c>copy_present_pte</c>,
/// <c>copy_huge_pmd</c>): every entry is copied into the child's table, the frame it maps gains a reference and a map
/// count and stops being exclusive, and in a copy-on-write mapping a writable entry becomes read-only on both sides,
/// so the first write of either faults and copies (<c>do_wp_page</c>). The child's entries are marked old.
/// </summary>
/// <remarks>
/// Each parent PTE table is copied with its PTE lock held, then the child's: a fault of the parent installs or
/// changes an entry under that lock, so it lands either before the copy of its table (and is shared, write-protected)
/// or after (and the child, forked before it, does not see it). The child's table is private to the fork until it
/// returns, so taking its lock second cannot deadlock.
/// </remarks>
internal unsafe struct CopyPageRangeVisitor : IPageRangeVisitor
{
    private readonly PageTable _parent;
    private readonly PageTable _child;
    private readonly FrameCache _frames;
    private readonly bool _copyOnWrite;
    private readonly object? _childAnonVma;
    private readonly bool _childWritable;
    private readonly ProbeSet? _probes;

    /// <summary>
    /// A copy from <paramref name="parent"/> into <paramref name="child"/>, allocating the child's tables from
    /// <paramref name="frames"/>. <paramref name="copyOnWrite"/>: the VMA is private and may be written
    /// (<c>is_cow_mapping</c>), so writable entries are write-protected. A pinned anonymous frame of such a VMA is copied
    /// for the child at once instead (<c>copy_present_page</c>), owned by <paramref name="childAnonVma"/> and writable
    /// when <paramref name="childWritable"/> (the child VMA's <c>VM_WRITE</c>). <paramref name="probes"/>: the parent's,
    /// for <see cref="ProbePoint.ForkBeforeWriteProtect"/>.
    /// </summary>
    public CopyPageRangeVisitor(PageTable parent, PageTable child, FrameCache frames, bool copyOnWrite, object? childAnonVma = null,
        bool childWritable = false, ProbeSet? probes = null)
    {
        _parent = parent;
        _child = child;
        _frames = frames;
        _copyOnWrite = copyOnWrite;
        _childAnonVma = childAnonVma;
        _childWritable = childWritable;
        _probes = probes;
    }

    /// <summary>Anonymous pages now mapped by the child too (its <c>MM_ANONPAGES</c>).</summary>
    public long AnonymousPages { get; private set; }

    /// <summary>Entries that became read-only in the parent (each needs its TLB entry flushed).</summary>
    public long WriteProtected { get; private set; }

    /// <summary>True when a table for the child could not be allocated; the copy stopped there (fork fails, ENOMEM).</summary>
    public bool OutOfMemory { get; private set; }

    /// <summary>Copies the entries of one parent table under both tables' PTE locks.</summary>
    public void VisitPteTable(long pteTable, int firstIndex, int endIndex, ulong tableBase)
    {
        if (OutOfMemory)
        {
            return;
        }
        if (!_child.WalkAllocate(tableBase + ((ulong)firstIndex << PageGeometry.PageShift), _frames, out PteLocation at))
        {
            OutOfMemory = true;
            return;
        }
        ref int parentLock = ref _parent.PteLock(pteTable);
        ref int childLock = ref _child.PteLock(at.PteTable);
        SpinWord.Enter(ref parentLock);
        SpinWord.Enter(ref childLock);
        ulong* source = _parent.Entries(pteTable);
        ulong* destination = _child.Entries(at.PteTable);
        for (int i = firstIndex; i < endIndex; i++)
        {
            ulong entry = source[i];
            if (entry == 0)
            {
                continue;
            }
            Debug.Assert(Pte.MapsFrame(entry), "no swap entries exist");
            ulong childEntry = Share(ref source[i], entry);
            if (OutOfMemory)
            {
                break;
            }
            // Release store: the frame's new counts (or the copy) are visible before the child's entry (set_pte_at).
            Volatile.Write(ref destination[i], childEntry);
        }
        SpinWord.Exit(ref childLock);
        SpinWord.Exit(ref parentLock);
    }

    /// <summary>Shares a huge PMD under both tables' <c>page_table_lock</c> (<c>copy_huge_pmd</c>).</summary>
    public void VisitHugePmd(long pmdTable, int pmdIndex, ulong address)
    {
        if (OutOfMemory)
        {
            return;
        }
        if (!_child.WalkAllocatePmd(address, _frames, out long childPmdTable, out int childPmdIndex))
        {
            OutOfMemory = true;
            return;
        }
        _parent.EnterPageTableLock();
        _child.EnterPageTableLock();
        ref ulong slot = ref _parent.Entries(pmdTable)[pmdIndex];
        ulong entry = slot;
        if (entry != 0)
        {
            // Release store, as for a PTE; the head frame carries the counts of the whole huge page.
            Volatile.Write(ref _child.Entries(childPmdTable)[childPmdIndex], Share(ref slot, entry));
        }
        _child.ExitPageTableLock();
        _parent.ExitPageTableLock();
    }

    // copy_present_pte: the frame's reference and map count for the child's entry, the parent's entry write-protected
    // in a copy-on-write mapping; returns the child's entry. The zero frame is shared as it is.
    private ulong Share(ref ulong parentSlot, ulong entry)
    {
        // folio_try_dup_anon_rmap_pte refuses (-EBUSY) an exclusive anonymous page that may be pinned in a COW mapping
        // (folio_needs_cow_for_dma), and copy_present_ptes then copies it (mm/memory.c).
        if ((entry & (Pte.Special | Pte.Huge)) == 0 && _copyOnWrite && _parent.Memory.IsPinned(Pte.Frame(entry))
            && _parent.Memory.Info(Pte.Frame(entry)).Kind == FrameKind.Anonymous
            && _parent.Memory.HasFlags(Pte.Frame(entry), FrameFlags.AnonExclusive))
        {
            return CopyPinned(entry);
        }
        if ((entry & Pte.Special) == 0)
        {
            long pfn = Pte.Frame(entry);
            PhysicalMemory memory = _parent.Memory;
            memory.DuplicateMapping(pfn);
            if (memory.Info(pfn).Kind == FrameKind.Anonymous)
            {
                AnonymousPages += (entry & Pte.Huge) != 0 ? PageGeometry.EntriesPerTable : 1;
            }
        }
        if (_copyOnWrite && (entry & Pte.Writable) != 0)
        {
            _probes?.Hit(ProbePoint.ForkBeforeWriteProtect);
            entry &= ~Pte.Writable;
            // ptep_set_wrprotect: an atomic clear of the write bit alone, since a Cpu's TLB fill sets the accessed and
            // dirty bits without the PTE lock (a plain store of the entry read above would drop them, and a page written
            // after MADV_FREE would look clean again). The parent's Cpus lose the writable translation with the fork's flush.
            Interlocked.And(ref parentSlot, ~Pte.Writable);
            WriteProtected++;
        }
        // The child keeps soft-dirty (copy_present_pte copies it) but not the parent's write-tracking arming: the dirty
        // log and write watches belong to the parent, and a read-only child entry faults on its own.
        return entry & ~(Pte.Accessed | Pte.WriteNotify);
    }

    // copy_present_page (folio_needs_cow_for_dma): the pinned frame may be read or written behind every page table, so
    // sharing it would leave the parent's next write to copy it away from the pin. The child gets its own copy now,
    // the parent's entry stays as it is (writable if it was). Out of frames: OutOfMemory, and fork fails with ENOMEM.
    private ulong CopyPinned(ulong entry)
    {
        PhysicalMemory memory = _parent.Memory;
        long source = Pte.Frame(entry);
        int copy = _frames.Allocate();
        if (copy == PhysicalMemory.NoFrame)
        {
            OutOfMemory = true;
            return 0;
        }
        memory.Copy(source, copy);
        ref FrameInfo info = ref memory.Info(copy);
        info.Kind = FrameKind.Anonymous;
        info.MapCount = 1;
        info.Mapping = _childAnonVma;
        info.Index = memory.Info(source).Index;
        memory.SetFlags(copy, FrameFlags.AnonExclusive);
        AnonymousPages++;
        // maybe_mkwrite(pte_mkdirty(pte)): a new exclusive page, written by the copy.
        ulong child = (entry & ~(Pte.FrameMask | Pte.Accessed | Pte.Writable)) | ((ulong)copy << PageGeometry.PageShift) | Pte.Dirty;
        return _childWritable && Pte.IsPresent(entry) ? child | Pte.Writable : child;
    }
}
