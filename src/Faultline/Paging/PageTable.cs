using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// A 4-level, 48-bit, x86-64-style page table whose table pages are frames of <see cref="PhysicalMemory"/>
/// (the kernel's pgd/pud/pmd/pte, with <c>page_table_lock</c> and split PTE locks).
/// </summary>
/// <remarks>
/// Locking: upper-level entries (pgd, pud, pmd) are populated and cleared under <see cref="EnterPageTableLock"/>;
/// PTEs change only under their table's split lock (<see cref="PteLock"/>). Entries are written with release
/// stores and read once with acquire loads, so a lockless walker inside a Cpu read section that sees a table
/// pointer also sees the table's zeroed contents. Table pages are freed only after being unhooked under
/// <c>page_table_lock</c> and a grace period (<see cref="MmuGather"/>).
/// </remarks>
internal sealed unsafe partial class PageTable
{
    private const int EntriesPerTable = PageGeometry.EntriesPerTable;
    private const int PgdShift = PageGeometry.PgdShift, PudShift = PageGeometry.PudShift, PmdShift = PageGeometry.PmdShift, PteShift = PageGeometry.PageShift;
    private const ulong PmdSpan = PageGeometry.PmdSize;

    private readonly PhysicalMemory _memory;
    private readonly long _root;
    private int _pageTableLock;
    private int _tablePages;

    /// <summary>
    /// The memory group the owning address space charges its pages to; a
    /// fork's copy of a pinned page is charged to the child's. Null: no accounting.
    /// </summary>
    public ChargeGroup? Charge { get; set; }

    /// <summary>Creates an empty table; the root (pgd) page is allocated now.</summary>
    public PageTable(PhysicalMemory memory)
    {
        _memory = memory;
        int root = memory.Allocate();
        if (root == PhysicalMemory.NoFrame)
        {
            throw new OutOfMemoryException("no frame for the page-table root");
        }
        PrepareTable(root);
        _root = root;
        _tablePages = 1;
    }

    /// <summary>
    /// <c>pgd_free</c>: gives the root page back, for an address space torn down over an arena that outlives it. Every
    /// lower table was freed first and no Cpu walks this table any more.
    /// </summary>
    public void FreeRoot()
    {
        _memory.Free((int)_root);
        Interlocked.Decrement(ref _tablePages);
    }

    /// <summary>Page-table pages in use, the root included.</summary>
    public int TablePages => Volatile.Read(ref _tablePages);

    /// <summary>The arena the tables live in.</summary>
    public PhysicalMemory Memory => _memory;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref ulong Slot(long table, int index) => ref ((ulong*)_memory.FrameAddress(table))[index];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int IndexOf(ulong address, int shift) => (int)((address >> shift) & (EntriesPerTable - 1));

    /// <summary>Takes <c>page_table_lock</c> (upper levels; also the speculative table install).</summary>
    public void EnterPageTableLock() => SpinWord.Enter(ref _pageTableLock);

    /// <summary>Releases <c>page_table_lock</c>.</summary>
    public void ExitPageTableLock() => SpinWord.Exit(ref _pageTableLock);

    /// <summary>The split lock word of a PTE table (<c>pte_lockptr</c>).</summary>
    public ref int PteLock(long pteTable) => ref _memory.Info(pteTable).PteLock;

    /// <summary>Reads a PTE once (READ_ONCE): an acquire load.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong ReadPte(in PteLocation at) => Volatile.Read(ref Slot(at.PteTable, at.PteIndex));

    /// <summary>Writes a PTE (<c>set_pte_at</c>) under its PTE lock: a release store, so the frame's contents (zeroed
    /// or copied) are visible to any Cpu that walks to it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void WritePte(in PteLocation at, ulong entry) => Volatile.Write(ref Slot(at.PteTable, at.PteIndex), entry);

    /// <summary>Reads the PMD slot of a location again (the <c>pmd_same(orig_pmd, *pmd)</c> check).</summary>
    public ulong ReadPmd(in PteLocation at) => Volatile.Read(ref Slot(at.PmdTable, at.PmdIndex));

    /// <summary>Sets accessed (and dirty) bits of a present PTE with a CAS (the hardware walker's A/D update); false if the PTE changed.</summary>
    public bool TrySetAccessedDirty(long pteTable, int index, ulong expected, bool dirty)
    {
        ulong wanted = expected | Pte.Accessed | (dirty ? Pte.Dirty : 0);
        return wanted == expected || Interlocked.CompareExchange(ref Slot(pteTable, index), wanted, expected) == expected;
    }

    /// <summary>
    /// Lockless walk (<c>gup_fast</c> style, the SPF walk): reads each level once. Must run inside a Cpu read
    /// section, which keeps every table page it reaches from being freed. Huge or non-table upper entries abort, except a
    /// huge PMD leaf: <see cref="WalkStatus.HugePmd"/> with the 4 KiB entry it implies.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public WalkStatus WalkLockless(ulong address, out PteLocation at, out ulong pte)
    {
        at = default;
        pte = 0;
        ulong pgd = Volatile.Read(ref Slot(_root, IndexOf(address, PgdShift)));
        if (pgd == 0)
        {
            return WalkStatus.UpperNone;
        }
        if ((pgd & (Pte.Present | Pte.Huge)) != Pte.Present)
        {
            return WalkStatus.UpperBad;
        }
        long pudTable = Pte.Frame(pgd);
        ulong pud = Volatile.Read(ref Slot(pudTable, IndexOf(address, PudShift)));
        if (pud == 0)
        {
            return WalkStatus.UpperNone;
        }
        if ((pud & (Pte.Present | Pte.Huge)) != Pte.Present)
        {
            return WalkStatus.UpperBad;
        }
        at.PmdTable = Pte.Frame(pud);
        at.PmdIndex = IndexOf(address, PmdShift);
        ulong pmd = Volatile.Read(ref Slot(at.PmdTable, at.PmdIndex));
        at.PmdEntry = pmd;
        if (pmd == 0)
        {
            return WalkStatus.PmdNone;
        }
        if ((pmd & (Pte.Present | Pte.Huge)) != Pte.Present)
        {
            if ((pmd & Pte.Huge) != 0 && Pte.MapsFrame(pmd))
            {
                at.PteIndex = IndexOf(address, PteShift);
                pte = HugeSubpageEntry(pmd, at.PteIndex);
                return WalkStatus.HugePmd;
            }
            return WalkStatus.UpperBad;
        }
        at.PteTable = Pte.Frame(pmd);
        at.PteIndex = IndexOf(address, PteShift);
        pte = Volatile.Read(ref Slot(at.PteTable, at.PteIndex));
        return WalkStatus.Ok;
    }

    /// <summary>
    /// The locked walk of the classic and VMA-lock paths (<c>__handle_mm_fault</c>'s p4d/pud/pmd/pte_alloc): allocates
    /// missing levels, each installed under <c>page_table_lock</c>. The caller's lock (mmap_lock or the VMA lock)
    /// keeps tables covering its VMA from being freed. False when no frame is left for a table.
    /// </summary>
    public bool WalkAllocate(ulong address, FrameCache frames, out PteLocation at)
    {
        at = default;
        long pudTable = EnsureTable(_root, IndexOf(address, PgdShift), frames);
        if (pudTable < 0)
        {
            return false;
        }
        long pmdTable = EnsureTable(pudTable, IndexOf(address, PudShift), frames);
        if (pmdTable < 0)
        {
            return false;
        }
        at.PmdTable = pmdTable;
        at.PmdIndex = IndexOf(address, PmdShift);
        long pteTable = EnsureTable(pmdTable, at.PmdIndex, frames);
        if (pteTable < 0)
        {
            // A huge PMD there (a racing huge fault): the caller sees it in PmdEntry and handles the huge entry instead.
            at.PmdEntry = pteTable == HugeLeafFound ? Volatile.Read(ref Slot(pmdTable, at.PmdIndex)) : 0;
            return false;
        }
        at.PmdEntry = Volatile.Read(ref Slot(pmdTable, at.PmdIndex));
        at.PteTable = pteTable;
        at.PteIndex = IndexOf(address, PteShift);
        return true;
    }

    /// <summary>
    /// The locked walk down to the PMD level only (for a huge PMD), allocating missing upper levels as
    /// <see cref="WalkAllocate"/> does. False when no frame is left for a table.
    /// </summary>
    public bool WalkAllocatePmd(ulong address, FrameCache frames, out long pmdTable, out int pmdIndex)
    {
        pmdIndex = IndexOf(address, PmdShift);
        long pudTable = EnsureTable(_root, IndexOf(address, PgdShift), frames);
        pmdTable = pudTable < 0 ? -1 : EnsureTable(pudTable, IndexOf(address, PudShift), frames);
        return pmdTable >= 0;
    }

    /// <summary>
    /// <c>get_old_pmd</c> without allocating: the PMD table covering <paramref name="address"/> and the slot's index, and
    /// 0; or, when an upper level is empty, the span that level covers (nothing is mapped in the aligned span around
    /// <paramref name="address"/>). The caller keeps the tables alive (the mmap write lock).
    /// </summary>
    public ulong FindPmdSlot(ulong address, out long pmdTable, out int pmdIndex)
    {
        pmdTable = -1;
        pmdIndex = IndexOf(address, PmdShift);
        ulong pgd = Volatile.Read(ref Slot(_root, IndexOf(address, PgdShift)));
        if (pgd == 0)
        {
            return PageGeometry.PgdSize;
        }
        ulong pud = Volatile.Read(ref Slot(Pte.Frame(pgd), IndexOf(address, PudShift)));
        if (pud == 0)
        {
            return PageGeometry.PudSize;
        }
        pmdTable = Pte.Frame(pud);
        return 0;
    }

    /// <summary>
    /// <c>move_page_tables</c>: moves the entries of [<paramref name="oldStart"/>, + <paramref name="length"/>) to
    /// <paramref name="newStart"/> (see <see cref="PageTableMover"/>), allocating the destination's tables from
    /// <paramref name="frames"/> and flushing the old range's TLB entries through <paramref name="gather"/>. Returns the
    /// bytes moved: less than <paramref name="length"/> only when a table could not be allocated. The caller holds the
    /// mmap lock for write with both ranges' VMAs write-locked and their sequences open.
    /// </summary>
    public ulong MoveRange(ulong oldStart, ulong newStart, ulong length, FrameCache frames, MmuGather gather, ProbeSet probes)
    {
        SynchronizeWithTableInstallers();
        var mover = new PageTableMover(this, frames, gather, probes);
        return mover.Move(oldStart, newStart, length);
    }

    /// <summary>
    /// <c>copy_page_range</c> of [start, end) from <paramref name="parent"/> into this (a forked child's) table; see
    /// <see cref="CopyPageRangeVisitor"/>. The caller holds the parent's mmap lock for write with the range's VMA
    /// write-locked, and flushes the parent's TLBs before anyone uses the child. Pinned anonymous frames are copied for
    /// the child (see <see cref="CopyPageRangeVisitor"/>). Returns the visitor's results.
    /// </summary>
    public CopyPageRangeVisitor CopyFrom(PageTable parent, ulong start, ulong end, bool copyOnWrite, FrameCache frames,
        object? childAnonVma = null, bool childWritable = false, ProbeSet? probes = null)
    {
        var copy = new CopyPageRangeVisitor(parent, this, frames, copyOnWrite, childAnonVma, childWritable, probes);
        parent.Walker.Walk(start, end, ref copy);
        return copy;
    }

    /// <summary>
    /// Speculative page-table allocation (Peter Zijlstra's sketch in the v2 thread): the missing levels are
    /// allocated outside any lock, then installed under <c>page_table_lock</c> only if <paramref name="check"/>
    /// says the VMA is unchanged and the slot is still empty. This is safe because <see cref="FreeTables"/> unhooks
    /// tables under the same lock after the unmapping writer moved the VMA sequence: either the writer's unhook
    /// comes later and sees (and frees) the table installed here, or it came first and the check sees the change.
    /// Returns false when the VMA changed or memory ran out; the walk is left in <paramref name="at"/> otherwise.
    /// </summary>
    public bool WalkAllocateSpeculative<TCheck>(ulong address, FrameCache frames, ref TCheck check, ProbeSet probes, out PteLocation at, out bool outOfMemory)
        where TCheck : struct, ISpeculativeCheck
    {
        at = default;
        outOfMemory = false;
        long table = _root;
        for (int shift = PgdShift; shift >= PmdShift; shift -= PageGeometry.TableIndexBits)
        {
            int index = IndexOf(address, shift);
            if (table != _root)
            {
                probes.Hit(ProbePoint.SpeculativeAllocWalkLevel);
            }
            ulong entry = Volatile.Read(ref Slot(table, index));
            // This walk runs outside any read section, so a table below the root is alive only while the VMA is
            // unchanged (munmap changes it, unhooks, and waits only for readers before freeing). Validate after the
            // read and before following the entry, as a seqlock reader does; the root is never freed.
            if (table != _root && check.HasChanged())
            {
                return false;
            }
            if (shift == PmdShift)
            {
                at.PmdTable = table;
                at.PmdIndex = index;
            }
            if (entry == 0)
            {
                int fresh = frames.Allocate();
                if (fresh == PhysicalMemory.NoFrame)
                {
                    outOfMemory = true;
                    return false;
                }
                PrepareTable(fresh);
                probes.Hit(ProbePoint.SpeculativeBeforeTableInstall);
                EnterPageTableLock();
                if (check.HasChanged())
                {
                    ExitPageTableLock();
                    DiscardTable(fresh, frames);
                    return false;
                }
                entry = Volatile.Read(ref Slot(table, index));
                if (entry == 0)
                {
                    probes.Hit(ProbePoint.SpeculativeTableInstallLocked);
                    entry = Pte.MakeTable(fresh);
                    Volatile.Write(ref Slot(table, index), entry);
                    Interlocked.Increment(ref _tablePages);
                    ExitPageTableLock();
                }
                else
                {
                    ExitPageTableLock();
                    DiscardTable(fresh, frames);
                }
            }
            if ((entry & (Pte.Present | Pte.Huge)) != Pte.Present)
            {
                return false;
            }
            table = Pte.Frame(entry);
        }
        at.PmdEntry = Volatile.Read(ref Slot(at.PmdTable, at.PmdIndex));
        if (Pte.Frame(at.PmdEntry) != table)
        {
            return false;
        }
        at.PteTable = table;
        at.PteIndex = IndexOf(address, PteShift);
        return true;
    }

    private long EnsureTable(long table, int index, FrameCache frames)
    {
        ulong entry = Volatile.Read(ref Slot(table, index));
        if (entry != 0)
        {
            return (entry & Pte.Huge) != 0 ? HugeLeafFound : Pte.Frame(entry);
        }
        int fresh = frames.Allocate();
        if (fresh == PhysicalMemory.NoFrame)
        {
            return -1;
        }
        PrepareTable(fresh);
        EnterPageTableLock();
        entry = Volatile.Read(ref Slot(table, index));
        if (entry == 0)
        {
            // Release store: the zeroed table is visible before the pointer to it (pairs with the walkers' acquire loads).
            entry = Pte.MakeTable(fresh);
            Volatile.Write(ref Slot(table, index), entry);
            Interlocked.Increment(ref _tablePages);
            fresh = PhysicalMemory.NoFrame;
        }
        ExitPageTableLock();
        if (fresh != PhysicalMemory.NoFrame)
        {
            DiscardTable(fresh, frames);
        }
        return (entry & Pte.Huge) != 0 ? HugeLeafFound : Pte.Frame(entry);
    }

    private void PrepareTable(int pfn)
    {
        _memory.PrepareZeroed(pfn);
        ref FrameInfo info = ref _memory.Info(pfn);
        info.Kind = FrameKind.PageTable;
        info.PteLock = 0;
    }

    private void DiscardTable(int pfn, FrameCache frames)
    {
        _memory.Info(pfn).Kind = FrameKind.Allocated;
        _memory.MarkUnused(pfn);
        frames.Release(pfn);
    }

    /// <summary>
    /// The PTE for an address, for diagnostics (0 when no table). The caller holds mmap_lock and the address lies in a
    /// VMA of the published tree (munmap takes a VMA out of the tree before it frees the tables under it), or the
    /// caller is inside a read section.
    /// </summary>
    public ulong Lookup(ulong address, ProbeSet probes)
    {
        WalkStatus status = WalkLockless(address, out PteLocation at, out ulong huge);
        if (status == WalkStatus.HugePmd)
        {
            return huge;
        }
        if (status != WalkStatus.Ok)
        {
            return 0;
        }
        probes.Hit(ProbePoint.DiagnosticLookupAfterPmd);
        return ReadPte(at);
    }

    /// <summary>
    /// <c>page_vma_mapped_walk</c> for one page: true when the entry at <paramref name="address"/> maps
    /// <paramref name="pfn"/>, read under its PTE lock. The caller keeps the tables there alive (see <see cref="Lookup"/>,
    /// or the reverse map's family lock).
    /// </summary>
    public bool MapsFrameLocked(ulong address, long pfn)
    {
        WalkStatus status = WalkLockless(address, out PteLocation at, out _);
        if (status == WalkStatus.HugePmd)
        {
            ulong entry = ReadHugeSubpageLocked(address, at);
            return Pte.MapsFrame(entry) && (entry & Pte.Special) == 0 && Pte.Frame(entry) == pfn;
        }
        if (status != WalkStatus.Ok)
        {
            return false;
        }
        ref int ptl = ref PteLock(at.PteTable);
        SpinWord.Enter(ref ptl);
        ulong pte = ReadPte(at);
        SpinWord.Exit(ref ptl);
        return Pte.MapsFrame(pte) && (pte & Pte.Special) == 0 && Pte.Frame(pte) == pfn;
    }

    /// <summary>
    /// The refcounted frame mapped at <paramref name="address"/>, with a reference taken under its PTE lock (the
    /// caller drops it with <see cref="PhysicalMemory.Put"/>), or -1. Tables: as for <see cref="Lookup"/>.
    /// </summary>
    public long GetMappedFrame(ulong address)
    {
        WalkStatus status = WalkLockless(address, out PteLocation at, out _);
        if (status == WalkStatus.HugePmd)
        {
            return GetHugeSubpageLocked(address, at);
        }
        if (status != WalkStatus.Ok)
        {
            return -1;
        }
        ref int ptl = ref PteLock(at.PteTable);
        SpinWord.Enter(ref ptl);
        ulong pte = ReadPte(at);
        long pfn = -1;
        if (Pte.MapsFrame(pte) && (pte & Pte.Special) == 0)
        {
            pfn = Pte.Frame(pte);
            _memory.Get(pfn);
        }
        SpinWord.Exit(ref ptl);
        return pfn;
    }

    /// <summary>A walker over this table (<c>walk_page_range</c>); see <see cref="PageRangeWalker"/> for its locking.</summary>
    public PageRangeWalker Walker => new(_memory, _root);

    /// <summary>The entries of a table page.</summary>
    public ulong* Entries(long table) => (ulong*)_memory.FrameAddress(table);

    /// <summary>
    /// <c>unmap_page_range</c> over [start, end): clears every PTE under its table's lock (and every huge PMD under
    /// <c>page_table_lock</c>) and hands the frames to <paramref name="gather"/> (<see cref="ZapVisitor"/>). When the
    /// batch fills, the TLB flush and grace period happen with the PTE lock held, as the kernel's forced flush does.
    /// Returns the number of refcounted (anonymous) pages unmapped. Caller holds mmap_lock (for write, or for read
    /// after a downgrade) and has taken the range's VMAs out of the tree, so only it frees tables there; or, for
    /// <c>MADV_DONTNEED</c>, holds it for read with the range inside VMAs of the published tree and frees no table.
    /// </summary>
    public long Zap(ulong start, ulong end, MmuGather gather, ProbeSet probes)
    {
        SynchronizeWithTableInstallers();
        SplitHugePmdEdges(start, end);
        var zap = new ZapVisitor(this, gather, probes);
        Walker.Walk(start, end, ref zap);
        return zap.Unmapped;
    }

    /// <summary>
    /// <c>free_pgtables</c> for an unmapped [start, end): frees each table whose whole span lies inside
    /// [floor, ceiling) (no VMA remains there). A PTE table is emptied under its own lock first (a speculative fault
    /// that validated just before the unmap may have installed a PTE after the zap) and unhooked under
    /// <c>page_table_lock</c>, which is what makes speculative table allocation safe. Returns the residual
    /// anonymous pages it had to zap.
    /// </summary>
    public long FreeTables(ulong start, ulong end, ulong floor, ulong ceiling, MmuGather gather)
    {
        long residual = 0;
        FreeLevel(_root, PgdShift, start, end, floor, ceiling, gather, ref residual);
        return residual;
    }

    // Frees the covered, empty tables below one table; returns true when this table itself looks empty (the caller
    // re-checks under page_table_lock before unhooking it, since a racing speculative fault installs entries under
    // that lock).
    private bool FreeLevel(long table, int shift, ulong start, ulong end, ulong floor, ulong ceiling, MmuGather gather, ref long residual)
    {
        ulong span = 1UL << shift;
        ulong* entries = (ulong*)_memory.FrameAddress(table);
        ulong address = start;
        while (address < end)
        {
            ulong entryBase = address & ~(span - 1);
            ulong entryEnd = entryBase + span;
            int index = IndexOf(address, shift);
            // Read the slot under page_table_lock: a speculative fault hooks tables under it after re-validating its
            // VMA, and this writer changed that VMA before freeing. An unlocked read could see the slot still empty
            // while a fault that validated just before the change is about to hook a table there (never freed).
            EnterPageTableLock();
            ulong entry = Volatile.Read(ref entries[index]);
            ExitPageTableLock();
            bool covered = entryBase >= floor && entryEnd <= ceiling;
            if (entry != 0 && (entry & Pte.Huge) == 0)
            {
                long child = Pte.Frame(entry);
                if (shift == PmdShift)
                {
                    if (covered)
                    {
                        EmptyPteTable(child, entryBase, gather, ref residual);
                        EnterPageTableLock();
                        Volatile.Write(ref entries[index], 0UL);
                        ExitPageTableLock();
                        SpinWord.Exit(ref PteLock(child));
                        gather.RemoveTable(child);
                        Interlocked.Decrement(ref _tablePages);
                    }
                }
                else if (FreeLevel(child, shift - 9, address, Math.Min(end, entryEnd), floor, ceiling, gather, ref residual) && covered)
                {
                    EnterPageTableLock();
                    bool empty = IsEmptyTable(child);
                    if (empty)
                    {
                        Volatile.Write(ref entries[index], 0UL);
                    }
                    ExitPageTableLock();
                    if (empty)
                    {
                        gather.RemoveTable(child);
                        Interlocked.Decrement(ref _tablePages);
                    }
                }
            }
            address = entryEnd;
        }
        return table != _root && IsEmptyTable(table);
    }

    // Called by Zap after the writer moved the VMA sequences and before it walks the tables without page_table_lock
    // (FreeLevel instead reads each slot under the lock): a speculative table install that validated the old sequence holds (or held) the lock, so
    // acquiring it once waits for that install and makes the table visible to the walk; any install that takes the
    // lock later sees the moved sequence and gives up. (The SPIN model's "re-look under page_table_lock".)
    private void SynchronizeWithTableInstallers()
    {
        EnterPageTableLock();
        ExitPageTableLock();
    }

    private bool IsEmptyTable(long table)
    {
        ulong* entries = (ulong*)_memory.FrameAddress(table);
        for (int i = 0; i < EntriesPerTable; i++)
        {
            if (Volatile.Read(ref entries[i]) != 0)
            {
                return false;
            }
        }
        return true;
    }

    // Takes the PTE table's lock and zaps what a racing speculative fault may have installed after the zap; the
    // lock stays held until the table is unhooked, so no PTE can appear in between.
    private void EmptyPteTable(long pteTable, ulong tableBase, MmuGather gather, ref long residual)
    {
        SpinWord.Enter(ref PteLock(pteTable));
        ulong* entries = (ulong*)_memory.FrameAddress(pteTable);
        for (int i = 0; i < EntriesPerTable; i++)
        {
            ulong entry = entries[i];
            if (entry == 0)
            {
                continue;
            }
            Volatile.Write(ref entries[i], 0UL);
            gather.NoteTranslationChange(tableBase + ((ulong)i << PteShift));
            if (Pte.MapsFrame(entry) && (entry & Pte.Special) == 0 && gather.RemoveMapping(Pte.Frame(entry)))
            {
                residual++;
            }
            else if (Pte.IsSwap(entry))
            {
                // Reclaim may have swapped out what a racing speculative fault installed after the zap.
                SwapEntries?.Free(SwapEntry.FromPte(entry));
            }
        }
    }

    /// <summary>
    /// <c>change_protection</c>: rewrites the protection of every entry mapping a frame in [start, end) under its
    /// lock (<see cref="ChangeProtectionVisitor"/>). <paramref name="vmaMayWrite"/>: the VMA's new flags allow writable
    /// PTEs (private and writable); exclusive anonymous frames then become writable in place, others must fault to
    /// copy. Notes narrowing changes in <paramref name="gather"/>. Caller holds mmap_lock for write.
    /// <paramref name="softDirtyEnabled"/>: <c>vma_soft_dirty_enabled</c>, entries not soft-dirty stay read-only.
    /// </summary>
    public void ChangeProtection(ulong start, ulong end, PageProtection protection, bool vmaMayWrite, MmuGather gather,
        bool softDirtyEnabled = false, ProbeSet? probes = null)
    {
        SplitHugePmdEdges(start, end);
        var change = new ChangeProtectionVisitor(this, protection, vmaMayWrite, gather, softDirtyEnabled, probes);
        Walker.Walk(start, end, ref change);
    }

    /// <summary>
    /// <c>madvise_free_pte_range</c> over [start, end): marks the anonymous frames mapped there once lazily freeable
    /// and cleans their PTEs (<see cref="LazyFreeVisitor"/>), noting each cleaned translation in
    /// <paramref name="gather"/>. Caller holds mmap_lock, for read with the range inside VMAs of the published tree.
    /// </summary>
    public void MarkLazyFree(ulong start, ulong end, MmuGather gather)
    {
        SplitHugePmdEdges(start, end);
        var free = new LazyFreeVisitor(this, gather);
        Walker.Walk(start, end, ref free);
    }

    /// <summary>
    /// Counts the entries in [start, end) (<see cref="ResidentCounts"/>). The caller holds mmap_lock and
    /// [start, end) lies inside VMAs of the published tree (see <see cref="Lookup"/>).
    /// </summary>
    public ResidentCounts CountResident(ulong start, ulong end)
    {
        var count = new ResidencyCountVisitor(this);
        Walker.Walk(start, end, ref count);
        return count.Counts;
    }

    /// <summary>
    /// Replaces the PTE at <paramref name="at"/> if it still is <paramref name="expected"/> (reclaim's
    /// <c>ptep_get_and_clear</c> and <c>ptep_test_and_clear_young</c>): a compare-and-swap, because a Cpu's TLB fill
    /// sets Accessed and Dirty with one without the PTE lock. The caller holds the PTE lock.
    /// </summary>
    public bool TryReplacePte(in PteLocation at, ulong expected, ulong value) =>
        // Full fence; pairs with the TLB fill's compare-and-swap and the lockless walks' acquire reads.
        Interlocked.CompareExchange(ref Slot(at.PteTable, at.PteIndex), value, expected) == expected;

    /// <summary>
    /// The swap areas' side of this table's swap entries (a zap frees them, a fork duplicates them); null while the
    /// address space has no swap, when no swap entry can exist. Set once, before the table is used.
    /// </summary>
    public ISwapEntries? SwapEntries { get; set; }
}
