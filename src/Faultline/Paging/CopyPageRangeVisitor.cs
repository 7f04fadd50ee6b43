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
            if (Pte.IsSwap(entry))
            {
                // copy_nonpresent_pte: the child references the same slot (swap_duplicate); neither entry is exclusive now.
                _parent.SwapEntries?.Duplicate(SwapEntry.FromPte(entry));
                Volatile.Write(ref source[i], entry & ~Pte.SwapExclusive);
                Volatile.Write(ref destination[i], entry & ~Pte.SwapExclusive);
                continue;
            }
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

    /// <summary>
    /// Shares a huge PMD under both tables' <c>page_table_lock</c> (<c>copy_huge_pmd</c>): the block gains a reference
    /// and a map count on every frame and is exclusive no more; the child gets a PTE table deposited for its own split.
    /// </summary>
    public void VisitHugePmd(long pmdTable, int pmdIndex, ulong address)
    {
        if (OutOfMemory)
        {
            return;
        }
        if (_copyOnWrite && HasPinnedFrame(Volatile.Read(ref _parent.Entries(pmdTable)[pmdIndex])))
        {
            // copy_huge_pmd refuses a pinned block (folio_needs_cow_for_dma): split it, and copy_pte_range then copies
            // the pinned pages for the child and shares the rest. The parent's mmap write lock keeps the table.
            _parent.SplitHugePmd(address);
            ulong table = Volatile.Read(ref _parent.Entries(pmdTable)[pmdIndex]);
            VisitPteTable(Pte.Frame(table), 0, PageGeometry.EntriesPerTable, address);
            return;
        }
        int deposit = _child.AllocateDeposit(_frames);
        if (deposit == PhysicalMemory.NoFrame || !_child.WalkAllocatePmd(address, _frames, out long childPmdTable, out int childPmdIndex))
        {
            if (deposit != PhysicalMemory.NoFrame)
            {
                _child.ReleaseDeposit(deposit, _frames);
            }
            OutOfMemory = true;
            return;
        }
        _parent.EnterPageTableLock();
        ref ulong slot = ref _parent.Entries(pmdTable)[pmdIndex];
        ulong entry = slot;
        ulong childEntry = 0;
        if (entry != 0)
        {
            // The huge zero page is shared as it is; an anonymous block gains its counts and is write-protected.
            if ((entry & Pte.Special) == 0)
            {
                _parent.Memory.DuplicateHugeMapping(Pte.Frame(entry));
                entry = ShareHuge(ref slot, entry);
            }
            childEntry = entry & ~(Pte.Accessed | Pte.WriteNotify);
        }
        _parent.ExitPageTableLock();
        if (childEntry == 0)
        {
            _child.ReleaseDeposit(deposit, _frames);
        }
        else
        {
            // The child's tables are private to the fork until it returns, so its slot is still empty.
            bool installed = _child.TryInstallHugePmd(childPmdTable, childPmdIndex, childEntry, deposit, _frames);
            Debug.Assert(installed, "the child's PMD slot is private to the fork");
        }
    }

    // True when `entry` maps an anonymous block one of whose frames is pinned.
    private readonly bool HasPinnedFrame(ulong entry)
    {
        if ((entry & (Pte.Special | Pte.Huge)) != Pte.Huge || !Pte.MapsFrame(entry))
        {
            return false;
        }
        long head = Pte.Frame(entry);
        for (long pfn = head; pfn < head + PhysicalMemory.HugeFrames; pfn++)
        {
            if (_parent.Memory.IsPinned(pfn))
            {
                return true;
            }
        }
        return false;
    }

    // copy_huge_pmd's share of an anonymous block (its counts were taken): write-protect a copy-on-write PMD on the
    // parent's side; returns the parent's entry as it now is.
    private ulong ShareHuge(ref ulong parentSlot, ulong entry)
    {
        AnonymousPages += PageGeometry.EntriesPerTable;
        if (_copyOnWrite && (entry & Pte.Writable) != 0)
        {
            // A CAS: a TLB fill may set accessed or dirty on the PMD without the lock.
            while (true)
            {
                ulong seen = Interlocked.CompareExchange(ref parentSlot, entry & ~Pte.Writable, entry);
                if (seen == entry)
                {
                    break;
                }
                entry = seen;
            }
            entry &= ~Pte.Writable;
            WriteProtected++;
        }
        return entry;
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
        if (_child.Charge is { } group && !group.TryCharge(copy, 1, FrameKind.Anonymous))
        {
            // The child's group has no room for its copy: fork fails with ENOMEM, as a failed charge fails it on Linux.
            _frames.Release(copy);
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
