using Faultline.Concurrency;
using Faultline.Physical;
using Faultline.VmStat;

namespace Faultline.Paging;

/// <summary>
/// Huge PMDs (<c>mm/huge_memory.c</c>): installing one over a huge block, reading the 4 KiB entry it implies, and
/// splitting one into a table of 512 PTEs (<c>__split_huge_pmd</c>).
/// </summary>
/// <remarks>
/// <para>
/// Locking: a huge PMD changes only under <c>page_table_lock</c> (the kernel's <c>pmd_lock</c>), except for the accessed
/// and dirty bits a Cpu's TLB fill sets with a CAS and no lock, which is why a split replaces the entry with a CAS and
/// builds its PTEs again if a fill got in first.
/// </para>
/// <para>
/// Every huge PMD has a PTE table deposited for it when it is made (<c>pgtable_trans_huge_deposit</c>), so a split
/// never allocates and never fails; a zap of the whole PMD withdraws the table and frees it with the gather. The kernel
/// hangs the deposit off the PMD table's page; here it is one stack per page table under <c>page_table_lock</c>: any
/// deposited table serves any split, and the count matches the huge PMDs mapped. Deposits count in
/// <see cref="TablePages"/>, as they count in the kernel's <c>mm->pgtables_bytes</c>.
/// </para>
/// </remarks>
internal sealed unsafe partial class PageTable
{
    // EnsureTable's answer when the slot holds a huge PMD leaf rather than a table.
    private const long HugeLeafFound = -2;

    private readonly Stack<int> _deposited = new(); // guarded by page_table_lock

    /// <summary>Where the page table counts <c>thp_split_pmd</c>; set once by the address space that owns the table.</summary>
    public EventCounters? Events { get; set; }

    /// <summary>
    /// The 4 KiB entry a huge PMD implies for the page at <paramref name="pteIndex"/> of its span: same bits, frame
    /// <c>head + pteIndex</c>, no <see cref="Pte.Huge"/> (bit 7 is PAT at the PTE level).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong HugeSubpageEntry(ulong pmd, int pteIndex) =>
        (pmd & ~Pte.Huge) + ((ulong)pteIndex << PageGeometry.PageShift);

    /// <summary>Reads a PMD slot once (an acquire load; pairs with the release stores that install tables and huge PMDs).</summary>
    public ulong ReadPmdSlot(long pmdTable, int pmdIndex) => Volatile.Read(ref Slot(pmdTable, pmdIndex));

    /// <summary>
    /// The TLB fill's accessed/dirty update on a huge PMD (the hardware walker sets them on the PMD): a CAS from
    /// <paramref name="expected"/>; false if the PMD changed (split, zapped, reprotected), and the walk starts again.
    /// </summary>
    public bool TrySetAccessedDirtyPmd(in PteLocation at, ulong expected, bool dirty)
    {
        ulong wanted = expected | Pte.Accessed | (dirty ? Pte.Dirty : 0);
        return wanted == expected
            || Interlocked.CompareExchange(ref Slot(at.PmdTable, at.PmdIndex), wanted, expected) == expected;
    }

    /// <summary>
    /// A zeroed PTE table for a huge PMD about to be installed (<c>pte_alloc_one</c> before
    /// <c>pgtable_trans_huge_deposit</c>), or <see cref="PhysicalMemory.NoFrame"/>. Hand it to
    /// <see cref="TryInstallHugePmd"/>, which deposits it or gives it back.
    /// </summary>
    public int AllocateDeposit(FrameCache frames)
    {
        int table = frames.Allocate();
        if (table != PhysicalMemory.NoFrame)
        {
            PrepareTable(table);
        }
        return table;
    }

    /// <summary>Gives back a table from <see cref="AllocateDeposit"/> that was not deposited.</summary>
    public void ReleaseDeposit(int table, FrameCache frames) => DiscardTable(table, frames);

    /// <summary>
    /// Installs <paramref name="entry"/> (a huge leaf) in an empty PMD slot under <c>page_table_lock</c>, depositing
    /// <paramref name="deposit"/> for its later split; false, with the deposit given back to <paramref name="frames"/>,
    /// when the slot is no longer empty (another fault got there first). The caller set the frames' metadata; the
    /// release store publishes it.
    /// </summary>
    public bool TryInstallHugePmd(long pmdTable, int pmdIndex, ulong entry, int deposit, FrameCache frames)
    {
        Debug.Assert((entry & Pte.Huge) != 0, "a huge leaf");
        EnterPageTableLock();
        ref ulong slot = ref Slot(pmdTable, pmdIndex);
        if (Volatile.Read(ref slot) != 0)
        {
            ExitPageTableLock();
            DiscardTable(deposit, frames);
            return false;
        }
        _deposited.Push(deposit);
        Interlocked.Increment(ref _tablePages);
        // Release store: the block's contents and metadata are visible before the entry (set_pmd_at).
        Volatile.Write(ref slot, entry);
        ExitPageTableLock();
        return true;
    }

    /// <summary>
    /// Replaces the huge PMD <paramref name="expected"/> by <paramref name="entry"/> under <c>page_table_lock</c>
    /// (the huge fault's <c>pmd_same</c> then <c>set_pmd_at</c>); false when the slot no longer holds
    /// <paramref name="expected"/>. The deposit stays with the PMD.
    /// </summary>
    public bool TryReplaceHugePmd(long pmdTable, int pmdIndex, ulong expected, ulong entry)
    {
        EnterPageTableLock();
        ref ulong slot = ref Slot(pmdTable, pmdIndex);
        // A TLB fill may set accessed/dirty without the lock: compare and store with one CAS.
        bool same = Interlocked.CompareExchange(ref slot, entry, expected) == expected;
        ExitPageTableLock();
        return same;
    }

    /// <summary>
    /// <c>pgtable_trans_huge_withdraw</c> for a huge PMD a zap just cleared (under <c>page_table_lock</c>): its deposited
    /// table goes to <paramref name="gather"/>, freed after the flush.
    /// </summary>
    public void WithdrawDepositLocked(MmuGather gather)
    {
        int table = _deposited.Pop();
        gather.RemoveTable(table);
        Interlocked.Decrement(ref _tablePages);
    }

    /// <summary>
    /// <c>split_huge_pmd</c> at the PMD covering <paramref name="address"/>, if it is a huge leaf: the deposited table is
    /// filled with the 512 entries the PMD implies (same frames and bits; a huge zero page becomes 512 entries of the
    /// 4 KiB zero frame, as <c>__split_huge_zero_page_pmd</c> maps them) and hooked in its place. No translation
    /// changes, so no TLB flush is owed. Returns true when a PMD was split. Caller: as for the walker (tables alive),
    /// with the VMA around <paramref name="address"/> stable.
    /// </summary>
    public bool SplitHugePmd(ulong address)
    {
        if (FindPmdSlot(address, out long pmdTable, out int pmdIndex) != 0)
        {
            return false;
        }
        ref ulong slot = ref Slot(pmdTable, pmdIndex);
        if ((Volatile.Read(ref slot) & Pte.Huge) == 0)
        {
            return false;
        }
        EnterPageTableLock();
        ulong pmd = Volatile.Read(ref slot);
        if ((pmd & Pte.Huge) == 0)
        {
            ExitPageTableLock();
            return false;
        }
        int table = _deposited.Pop();
        ulong* entries = (ulong*)_memory.FrameAddress(table);
        long head = Pte.Frame(pmd);
        bool zero = (pmd & Pte.Special) != 0;
        while (true)
        {
            for (int i = 0; i < EntriesPerTable; i++)
            {
                entries[i] = zero
                    ? (pmd & ~(Pte.Huge | Pte.FrameMask)) | ((ulong)PhysicalMemory.ZeroFrame << PteShift)
                    : HugeSubpageEntry(pmd, i);
            }
            // Full fence: the filled table is visible before the pointer to it (pairs with the walkers' acquire loads).
            ulong seen = Interlocked.CompareExchange(ref slot, Pte.MakeTable(table), pmd);
            if (seen == pmd)
            {
                break;
            }
            // A TLB fill set accessed or dirty on the PMD meanwhile; the PTEs must carry it.
            pmd = seen;
        }
        if (!zero)
        {
            _memory.SplitHugeMapping(head);
        }
        ExitPageTableLock();
        Events?.AddShared(VmEvent.ThpSplitPmd);
        return true;
    }

    /// <summary>
    /// Splits the huge PMDs that [<paramref name="start"/>, <paramref name="end"/>) covers only in part (its two ends),
    /// as <c>zap_pmd_range</c>, <c>change_pmd_range</c> and <c>madvise_free</c> do before they walk PTEs.
    /// </summary>
    public void SplitHugePmdEdges(ulong start, ulong end)
    {
        if ((start & (PmdSpan - 1)) != 0)
        {
            SplitHugePmd(start);
        }
        if ((end & (PmdSpan - 1)) != 0 && end > start)
        {
            // Within the PMD just split this finds a table and does nothing.
            SplitHugePmd(end - 1);
        }
    }

    // page_vma_mapped_walk's huge branch: the subpage entry of `address`, read under page_table_lock.
    private ulong ReadHugeSubpageLocked(ulong address, in PteLocation at)
    {
        EnterPageTableLock();
        ulong pmd = Volatile.Read(ref Slot(at.PmdTable, at.PmdIndex));
        ExitPageTableLock();
        return (pmd & Pte.Huge) != 0 ? HugeSubpageEntry(pmd, IndexOf(address, PteShift)) : 0;
    }

    // GetMappedFrame's huge branch: a reference on the subpage (counted on the block's head), under page_table_lock.
    private long GetHugeSubpageLocked(ulong address, in PteLocation at)
    {
        EnterPageTableLock();
        ulong pmd = Volatile.Read(ref Slot(at.PmdTable, at.PmdIndex));
        long pfn = -1;
        if ((pmd & Pte.Huge) != 0 && Pte.MapsFrame(pmd) && (pmd & Pte.Special) == 0)
        {
            pfn = Pte.Frame(pmd) + IndexOf(address, PteShift);
            _memory.Get(pfn);
        }
        ExitPageTableLock();
        return pfn;
    }
}
